"""``DELETE /users/{user_id}`` (write key): erasure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mosaicrec.serving.routes.common import WRITE, service
from mosaicrec.serving.schemas import ErasedOut, Id

router = APIRouter(tags=["users"])


@router.delete("/users/{user_id}", response_model=ErasedOut, dependencies=[WRITE])
def delete_user(request: Request, user_id: Id) -> dict[str, Any]:
    """Erase a user: every event whatever its weight, their profile and impressions, from the store and from
    memory. Durable: a restart, a reload and a retrain never serve them from the model's old row, and a
    later load of their old events is dropped. They get the cold-start list from then on."""
    return {"user_id": user_id, "events_erased": service(request).delete_user(user_id)}
