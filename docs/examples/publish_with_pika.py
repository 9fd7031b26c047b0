import datetime
import json
import uuid

import pika  # pip install pika

# Log in as your service's own RabbitMQ user (docs/security.md); user_id below names it.
parameters = pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
conn = pika.BlockingConnection(parameters)
channel = conn.channel()
channel.confirm_delivery()  # basic_publish now raises UnroutableError / NackError on failure
event = {
    "specversion": "1.0",
    "id": str(uuid.uuid4()),
    "source": "/teams",
    "type": "team.invite.sent",
    "time": datetime.datetime.now(datetime.UTC).isoformat(),
    "data": {
        "recipients": ["user-42"],
        "team_name": "Night Owls",
        "inviter_name": "Mira",
        "url": "https://esports.example/invites/981",
    },
}
channel.basic_publish(
    "events",
    event["type"],
    json.dumps(event).encode(),
    mandatory=True,
    properties=pika.BasicProperties(
        content_type="application/cloudevents+json", delivery_mode=2, user_id=parameters.credentials.username
    ),
)
conn.close()
