"""The reviewers' web UI, served by `safeset serve` under /ui.

Server-rendered pages over the shared review queue (`safeset.review`):
accounts and roles (`users`), server-side sessions (`sessions`), CSRF tokens
(`csrf`), login throttling (`throttle`), blurred and clear image renditions
(`rendition`) and the pages themselves (`routes`). See docs/review-ui.md.
"""
