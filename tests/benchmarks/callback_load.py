"""Send planned HTTP POSTs at a fixed concurrency, one connection each (gunicorn's sync workers
close every connection), and write each answer's status and latency with this process's own
CPU time. Plain asyncio streams keep the sender's CPU per request far below the server's.

    python -m tests.benchmarks.callback_load PLAN.json RESULTS.json --concurrency 32

PLAN.json: {"host", "port", "requests": [{"path", "headers", "body"}, ...]}.
"""

import argparse
import asyncio
import json
import resource
import time


def encode(host: str, port: int, planned: dict) -> bytes:
    body = planned["body"].encode()
    lines = [
        f"POST {planned['path']} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in planned["headers"].items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def send(host: str, port: int, message: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(message)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        status = int(answer.split(b" ", 2)[1])
    except (OSError, IndexError, ValueError):
        status = 0
    return status, time.perf_counter() - started


async def run(host: str, port: int, messages: list[bytes], concurrency: int) -> list:
    results: list = [None] * len(messages)
    cursor = iter(range(len(messages)))

    async def connection() -> None:
        for number in cursor:
            results[number] = await send(host, port, messages[number])

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("plan")
    parser.add_argument("results")
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    with open(args.plan) as plan_file:
        plan = json.load(plan_file)
    messages = [encode(plan["host"], plan["port"], planned) for planned in plan["requests"]]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    results = asyncio.run(run(plan["host"], plan["port"], messages, args.concurrency))
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    with open(args.results, "w") as results_file:
        json.dump({"results": results, "wall": wall, "cpu": cpu}, results_file)


if __name__ == "__main__":
    main()
