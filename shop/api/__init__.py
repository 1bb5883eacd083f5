"""The HTTP surfaces: thin blueprints that parse, call the checkout domain, and render."""
