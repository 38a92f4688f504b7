"""The matcher's parts: single-value queries, bank views, lookup filters, store watching.

`safeset.service.live_index.LiveIndex` puts them together; the HTTP face is
`safeset.service.routes_match`.
"""
