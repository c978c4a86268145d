"""``POST /events`` (write key): feedback, durable before the reply."""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request

from mosaicrec.serving.routes.common import WRITE, service
from mosaicrec.serving.schemas import EventsIn, EventsOut

router = APIRouter(tags=["feedback"])


@router.post("/events", response_model=EventsOut, status_code=201, dependencies=[WRITE])
def add_events(request: Request, body: EventsIn) -> dict[str, Any]:
    """Store events (written before the reply; concurrent calls share one commit). A weight at or above the
    model's positive threshold is a like, folded into the user's next list; below it, a dislike: that item
    leaves the user's lists and is never cited."""
    now = int(time.time())
    frame = pd.DataFrame([{"user_id": e.user_id, "item_id": e.item_id,
                           "timestamp": e.timestamp if e.timestamp is not None else now,
                           "event_type": e.event_type, "weight": e.weight,
                           "context": json.dumps(e.context, sort_keys=True)} for e in body.events])
    return {"received": len(frame), "added": service(request).add_events(frame)}
