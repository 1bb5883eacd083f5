"""`flask --app app …` commands (`commands`) and provider webhook simulation (`simulate`).

Like api, an edge: may import every layer below and the shared modules in shop/.
"""
