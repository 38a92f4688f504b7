"""The review queue: candidate matches waiting for a human decision.

Items come from scan/clean runs (`importer`, rows with action `review`) and
from the HTTP service (uploads that matched). Their image bytes, where there
are any, are kept encrypted in the quarantine (`quarantine`) until decided
and past retention. A decision confirms (hashes go to a local bank), marks a
false positive (the matched values go to the negative bank, which suppresses
later matches: `negative`) or escalates. The CLI, the JSON API and the web UI
all go through `queue.ReviewQueue`.

Modules are imported on use: `safeset.review.negative` is read by the matcher
and must stay light.
"""
