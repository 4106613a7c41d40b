"""Running an installation: backup and restore, health and status, retention, the scheduler."""
