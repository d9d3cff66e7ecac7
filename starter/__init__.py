"""Operator scripts: start and control the workflows, backfill files, run the demo."""
