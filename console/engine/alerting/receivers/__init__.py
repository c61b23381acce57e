"""One module per service a notification can go to; each exposes `send(ctx, receiver,
batch)` (see `base`)."""
