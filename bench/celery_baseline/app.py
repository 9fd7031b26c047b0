"""The Celery application: ``ingest`` (dedup, preferences, inbox rows) and ``send_email`` (SMTP).

    celery -A bench.celery_baseline.app worker -Q $BENCH_PREFIX.ingest --pool prefork --concurrency 4 \
        --without-gossip --without-mingle --without-heartbeat -l warning
"""

from __future__ import annotations

import email.utils
import json
import os
import smtplib
import time
import uuid
from email.message import EmailMessage
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from .db import database
from .render import email_parts, subject_and_text

PREFIX = os.environ.get("BENCH_PREFIX", "bench_celery")
INGEST_QUEUE = f"{PREFIX}.ingest"
EMAIL_QUEUE = f"{PREFIX}.email"
SMTP_HOST = "127.0.0.1"
MAIL_FROM = "Bench Arena <notifications@bench.test>"


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


app = Celery("bench_celery", broker=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,  # no result backend
    task_acks_late=True,  # ack after the task ran: a crashed worker's tasks are redelivered
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "4")),
    task_queues=[_queue(INGEST_QUEUE), _queue(EMAIL_QUEUE)],
    task_default_queue=INGEST_QUEUE,
    task_routes={"bench.send_email": {"queue": EMAIL_QUEUE}},
    task_create_missing_queues=False,
    # Nothing on the broker but the two queues and their exchanges: no pidbox, no event exchange.
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    control_exchange=f"{PREFIX}.control",
    event_exchange=f"{PREFIX}.celeryev",
    broker_connection_retry_on_startup=True,
)

INSERT_EVENT = """
    INSERT INTO events (source, id, type, data, created_at) VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (source, id) DO NOTHING
"""
INSERT_INBOX = """
    INSERT INTO inbox (id, user_id, event_source, event_id, type, subject, body, created_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""
RECIPIENT = """
    SELECT users.email, users.name, preferences.in_app, preferences.email
    FROM users LEFT JOIN preferences ON preferences.user_id = users.id AND preferences.type = %s
    WHERE users.id = %s
"""


@app.task(name="bench.ingest")
def ingest(event: dict[str, Any]) -> None:
    """Store the event once, write an inbox row per recipient, then queue one email per recipient."""
    db = database()
    emails: list[dict[str, Any]] = []
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(INSERT_EVENT),
            (event["source"], event["id"], event["type"], json.dumps(event["data"]), time.time()),
        )
        if cursor.rowcount == 0:
            return  # a duplicate: (source, id) is already stored
        subject, text = subject_and_text(event)
        for user_id in event["data"]["recipients"]:
            cursor.execute(db.sql(RECIPIENT), (event["type"], user_id))
            row = cursor.fetchone()
            if row is None:
                continue  # an unknown user
            address, name, in_app, email_on = row
            if in_app is None or in_app:
                cursor.execute(
                    db.sql(INSERT_INBOX),
                    (
                        uuid.uuid4().hex,
                        user_id,
                        event["source"],
                        event["id"],
                        event["type"],
                        subject,
                        text,
                        time.time(),
                    ),
                )
            if address and (email_on is None or email_on):
                emails.append({"id": user_id, "email": address, "name": name})
    for user in emails:  # after the commit: a worker never emails about an event it did not store
        send_email.delay(user, event)


_smtp: tuple[int, smtplib.SMTP] | None = None


def _connection(*, fresh: bool = False) -> smtplib.SMTP:
    """This process's SMTP connection, opened on first use and reused."""
    global _smtp
    if fresh or _smtp is None or _smtp[0] != os.getpid():
        _smtp = (os.getpid(), smtplib.SMTP(SMTP_HOST, int(os.environ["BENCH_SMTP_PORT"]), timeout=30))
    return _smtp[1]


@app.task(name="bench.send_email")
def send_email(user: dict[str, Any], event: dict[str, Any]) -> None:
    """Render the event's email for ``user`` and send it over the reused connection."""
    subject, text, html = email_parts(event, user)
    message = EmailMessage()
    message["From"] = MAIL_FROM
    message["To"] = email.utils.formataddr((user["name"] or "", user["email"]))
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain="bench.test")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    try:
        _connection().send_message(message)
    except smtplib.SMTPServerDisconnected:
        _connection(fresh=True).send_message(message)  # the server closed the idle connection: once more
