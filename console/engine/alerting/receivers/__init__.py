"""One module per service a notification can go to; each exposes `send(ctx, receiver,
batch)` (see `base`), except `alertmanager`, which keeps a cluster in step with the alert
state (re-sent every period, run by the Runtime rather than the outbox)."""
