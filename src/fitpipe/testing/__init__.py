"""Stand-ins for outside services, for tests, the demo and newcomers without a Google project."""
