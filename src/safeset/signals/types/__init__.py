"""One module per signal type family; each registers its types on import."""
