"""The Docker Engine API on a unix socket (`minirun system service`): aiohttp handlers over the
same library calls the CLI makes (minirun/frontend and below)."""
