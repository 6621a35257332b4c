"""The Engine API versions served: docker's clients ask `/_ping` and then call `/vX.Y/...` with
the version they negotiated down to ours."""

API_VERSION = "1.43"  # docker 24's: what the documents here follow
MIN_API_VERSION = "1.24"  # docker-py and Debian's docker 20.10 client (1.41) negotiate within it
