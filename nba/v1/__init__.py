"""Generated gRPC stubs (see proto/). Do not edit."""
