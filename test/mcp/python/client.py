"""The Python MCP SDK's Client through the sidecar, for test/mcp/python-client.test.ts and
test/approvals/mcp-python.test.ts.

Usage: client.py URL — lists tools, calls an allowed tool, a denied one and one whose answer the
sidecar masks; client.py URL call TOOL ARGS_JSON — one call. Prints one JSON report on stdout (the
test judges it). Errors are reported as the SDK raises them: MCPError code, message and data.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.shared.exceptions import MCPError


def error_of(e: MCPError) -> dict:
    return {"code": e.code, "message": e.error.message, "data": e.error.data}


async def call(client: Client, name: str, arguments: dict) -> dict:
    try:
        r = await client.call_tool(name, arguments)
    except MCPError as e:
        return {"error": error_of(e)}
    return {
        "isError": r.is_error,
        "content": [c.model_dump(mode="json", exclude_none=True) for c in r.content],
        "structuredContent": r.structured_content,
    }


async def main(url: str) -> None:
    report: dict = {}
    async with Client(url) as client:
        report["protocolVersion"] = client.session.protocol_version
        tools = await client.list_tools()
        report["tools"] = [[t.name, t.description] for t in tools.tools]
        report["allowed"] = await call(client, "get_weather", {"arg": "Oslo"})
        report["denied"] = await call(client, "delete_database", {})
        report["unlisted"] = await call(client, "send_email", {"arg": "x"})
        report["masked"] = await call(client, "lookup_customer", {})
        report["approval"] = await call(client, "run_report", {"arg": "q4"})
    print(json.dumps(report))


async def one_call(url: str, tool: str, arguments: dict) -> None:
    async with Client(url) as client:
        print(json.dumps(await call(client, tool, arguments)))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[2] == "call":
        asyncio.run(one_call(sys.argv[1], sys.argv[3], json.loads(sys.argv[4])))
    else:
        asyncio.run(main(sys.argv[1]))
