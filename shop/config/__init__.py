"""The merchant's files and environment, read once into frozen, validated values.

`schema` (the one definition of every key and variable: the parser, the unknown-key
sentence and docs/configuration.md all read it), `strict` (unknown keys -> one sentence with
the nearest known key and the line), `reference` (renders docs/configuration.md),
`settings` (config.json and the environment -> Settings), `fields` (typed readers that name
the file and key in every error), `catalog` (products.json -> Catalog), `tax_rules`
(tax.homeCountry, tax.nexus), `jsonfile` (reading a JSON file with one-sentence errors),
`startup` (stopping gunicorn with that sentence).

May import: the public surface of storage (the database URL's checks) and the shared modules
in shop/.
"""
