"""The continuous path: capture triggers, the outbox, what a task does with a change, queues."""
