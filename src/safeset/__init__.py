"""safeset: keep known child sexual abuse material out of AI training data.

The CLI, the HTTP service and this Python API are faces over the same jobs
(`safeset.jobs`).
"""

__version__ = "0.1.0"
