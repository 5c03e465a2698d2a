"""Baselines for `make bench`: the smallest honest peers the product is measured against."""
