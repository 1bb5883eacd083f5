"""The merchant's files and environment, read once into frozen, validated values.

`settings` (config.json and the environment -> Settings), `fields` (typed readers that name
the file and key in every error), `catalog` (products.json -> Catalog), `tax_rules`
(tax.homeCountry, tax.nexus), `jsonfile` (reading a JSON file with one-sentence errors),
`startup` (stopping gunicorn with that sentence).

May import: the public surface of storage (the database URL's checks) and the shared modules
in shop/.
"""
