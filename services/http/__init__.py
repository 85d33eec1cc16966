"""latentwire_http: the HTTP plumbing both services share (the model package knows no HTTP)."""
