"""Lexiscope's job queue: runs on demand, on Celery, with each job's state in the store (store/jobs.py).

policy.py     what the dashboard's job form may ask for (the admin's allowlist and caps)
client.py     submit, cancel and list jobs; start the local worker (torch-free: the dashboard uses it)
celery_app.py the broker and the Celery app, shared by the client and the worker
liveness.py   whether a job's worker is alive; marking dead workers' jobs failed
embedded.py   the one local worker process of a store when no broker is configured
worker.py     running a job with compute.pipeline: progress, heartbeat, GPU out-of-memory retry
cli.py        `lexiscope worker`, `lexiscope jobs` and queueing a plan
"""
