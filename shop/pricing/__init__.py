"""Pricing: what a cart costs. Lines, coupons, shipping options, tax, totals (`quotes`, `tax`).

Pure functions of (cart, settings, catalog) in integer minor units; no database, no HTTP.
Money itself (exponents, decimals at the edges) is the shared shop/money.py.

May import: config and the shared modules in shop/.
"""
