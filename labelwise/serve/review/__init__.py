"""`labelwise review RUN`: a local web app to fix the labels a run's model doubts.

session.py  the run, its data, the queues and the item details (no web code)
decisions.py  RUN/review/decisions.jsonl: append-only, latest decision per image wins
export.py   corrected labels in the data's own format, plus a summary of the changes
app.py      the FastAPI routes (token, hostile-input checks) and the page static/review.html
"""
