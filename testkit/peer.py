"""A dumdum reference client (dum-dum-irc 0.5.0's own protocol classes) driven
by JSON lines, for tests.

Usage: peer.py HOST PORT NICK [CAFILE]

With CAFILE, the in-band TLS upgrade trusts that file exactly as the
reference GUI client does (no hostname check).

Reads commands from stdin, one JSON object a line:
  {"op": "auth", "nick": "..."}          try another nick after a refusal
  {"op": "send", "channel": "...", "content": "..."}
  {"op": "list_channels"}
  {"op": "list_messages", "channel": "...", "before": 0, "after": 0}
  {"op": "quit"}
Writes events to stdout, one JSON object a line:
  {"ev": "hello", "tls": bool} {"ev": "auth", "success": bool, "nick": "..."}
  {"ev": "message", "id": int, "channel": "...", "nick": "...", "content": "..."}
  {"ev": "channels", "channels": [...]} {"ev": "messages", "messages": [...]}
  {"ev": "closed"} {"ev": "error", "reason": "..."}
"""

import asyncio
import json
import ssl
import sys

from dumdum.protocol import (
    Client,
    ClientEventAuthentication,
    ClientEventChannelsListed,
    ClientEventHello,
    ClientEventIncompatibleVersion,
    ClientEventMessageReceived,
    ClientEventMessagesListed,
)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def message_json(m):
    return {"id": m.id, "channel": m.channel_name, "nick": m.nick, "content": m.content}


async def main():
    host, port, nick = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cafile = sys.argv[4] if len(sys.argv) > 4 else None
    reader, writer = await asyncio.open_connection(host, port)
    client = Client(nick)
    writer.write(client.hello())
    await writer.drain()

    async def read_loop():
        while True:
            data = await reader.read(1024)
            if not data:
                emit({"ev": "closed"})
                return
            events, outgoing = client.receive_bytes(data)
            if outgoing:
                writer.write(outgoing)
            for event in events:
                if isinstance(event, ClientEventHello):
                    emit({"ev": "hello", "tls": event.using_ssl})
                    if event.using_ssl:
                        if cafile is None:
                            emit({"ev": "error", "reason": "server wants TLS but no CA given"})
                            return
                        # What the reference client does with the .crt its
                        # user picks (dumdum/client/connect_frame.py,
                        # _create_ssl_context; async_client.py,
                        # _upgrade_to_ssl): trust that file, skip the
                        # hostname check, and start TLS without a hostname.
                        ctx = ssl.create_default_context(cafile=cafile)
                        ctx.check_hostname = False
                        await writer.start_tls(ctx)
                    writer.write(client.authenticate())
                elif isinstance(event, ClientEventIncompatibleVersion):
                    emit({"ev": "incompatible", "required": event.server_version})
                elif isinstance(event, ClientEventAuthentication):
                    emit({"ev": "auth", "success": event.success, "nick": client.nick})
                elif isinstance(event, ClientEventMessageReceived):
                    emit({"ev": "message", **message_json(event.message)})
                elif isinstance(event, ClientEventChannelsListed):
                    emit({"ev": "channels", "channels": [c.name for c in event.channels]})
                elif isinstance(event, ClientEventMessagesListed):
                    emit({"ev": "messages", "messages": [message_json(m) for m in event.messages]})
            await writer.drain()

    async def command_loop():
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "quit":
                return
            if op == "auth":
                client.nick = cmd["nick"]
                writer.write(client.authenticate())
            elif op == "send":
                writer.write(client.send_message(cmd["channel"], cmd["content"]))
            elif op == "list_channels":
                writer.write(client.list_channels())
            elif op == "list_messages":
                writer.write(
                    client.list_messages(
                        cmd["channel"],
                        before=cmd.get("before") or None,
                        after=cmd.get("after") or None,
                    )
                )
            await writer.drain()

    reading = asyncio.ensure_future(read_loop())
    commands = asyncio.ensure_future(command_loop())
    try:
        await asyncio.wait([reading, commands], return_when=asyncio.FIRST_COMPLETED)
        for task in (reading, commands):
            if task.done() and task.exception() is not None:
                emit({"ev": "error", "reason": repr(task.exception())})
    finally:
        writer.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # reported to the test, which decides
        emit({"ev": "error", "reason": repr(e)})
    sys.stdout.flush()
    import os
    os._exit(0)
