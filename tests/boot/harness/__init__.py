"""The boot harness: three systemd containers booted from the stack's real user data (see docs/boot-harness.md)."""
