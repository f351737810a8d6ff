"""The distributed runtime: worker, client, reconciler and the in-memory backend."""
