"""The emulator's HTTP face: the batch, message and model endpoints and the test hooks."""
