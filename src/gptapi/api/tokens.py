"""``POST /tokenize`` and ``POST /detokenize`` in llama-server's shapes, so clients can count
tokens against the context window and map ids back to text with the server's own vocabulary.
Keyed and rate-limited like every other path (closed by default at the edge).

User text is data here too: ``content`` is tokenized with special-token parsing off, so
``<start_of_turn>`` typed by a user is counted as the text it is, exactly as a prompt would be.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gptapi.api.deps import GatewayDep, KeyDep, SettingsDep
from gptapi.api.schemas import CleanStr
from gptapi.api.tasks import ERROR_RESPONSES
from gptapi.engine import PromptPart
from gptapi.errors import InputTooLarge, InvalidRequest

router = APIRouter(tags=["tokens"])
_MAX_TOKENS_IN = 65_536


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: CleanStr = Field(..., description="Text to tokenize (as text: markup is not parsed).")
    add_special: bool = Field(False, description="Start with BOS where the vocabulary asks for it.")
    with_pieces: bool = Field(False, description="Each token as {id, piece} instead of an id.")


class TokenPiece(BaseModel):
    id: int
    piece: str = Field(description="The token's text; bytes of a split character are escaped.")


class TokenizeResponse(BaseModel):
    tokens: list[int] | list[TokenPiece]


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: Annotated[list[int], Field(max_length=_MAX_TOKENS_IN)]


class DetokenizeResponse(BaseModel):
    content: str


@router.post(
    "/tokenize", responses=ERROR_RESPONSES, summary="Token ids of a text, as the model sees it"
)
async def tokenize(
    body: TokenizeRequest, _key: KeyDep, gateway: GatewayDep, settings: SettingsDep
) -> TokenizeResponse:
    if len(body.content) > settings.max_prompt_chars:
        raise InputTooLarge(
            f"content has {len(body.content)} characters; the limit is {settings.max_prompt_chars}"
        )
    engine = gateway.engine
    tokens = await asyncio.to_thread(engine.tokenize, [PromptPart(body.content)])
    bos = await asyncio.to_thread(engine.tokenize, [])  # [] or [BOS]: what the vocabulary adds
    if not body.add_special and bos and tokens[: len(bos)] == bos:
        tokens = tokens[len(bos) :]
    if not body.with_pieces:
        return TokenizeResponse(tokens=tokens)
    pieces = await asyncio.to_thread(engine.pieces, tokens)
    return TokenizeResponse(
        tokens=[
            TokenPiece(id=t, piece=p.decode("utf-8", errors="backslashreplace"))
            for t, p in zip(tokens, pieces, strict=True)
        ]
    )


@router.post("/detokenize", responses=ERROR_RESPONSES, summary="The text of token ids")
async def detokenize(
    body: DetokenizeRequest, _key: KeyDep, gateway: GatewayDep
) -> DetokenizeResponse:
    try:
        pieces = await asyncio.to_thread(gateway.engine.pieces, body.tokens)
    except ValueError as exc:
        raise InvalidRequest(f"tokens: {exc}") from None
    return DetokenizeResponse(content=b"".join(pieces).decode("utf-8", errors="replace"))
