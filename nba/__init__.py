"""The `nba` command (``nba.cli``, gathering each package's commands) and the gRPC stubs generated
from proto/ (``nba.v1``: do not edit, run `make proto`)."""
