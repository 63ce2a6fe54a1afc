"""Drives a running ferrite over QMP with QEMU's own client (PyPI's qemu.qmp), checking
what QEMU's protocol promises: the greeting, negotiation, commands, errors, events, one
client per socket, and system_powerdown powering Debian's kernel off through ACPI.

usage: session.py QMP_SOCKET RAW_SOCKET FERRITE_PID
Prints one line per check; exits non-zero with the reason on the first failure."""

import asyncio
import json
import os
import re
import socket
import sys

from qemu.qmp import ExecuteError, QMPClient


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


async def next_event(q, name, timeout=60):
    async def wait():
        async for e in q.events:
            if e["event"] == name:
                return e
    return await asyncio.wait_for(wait(), timeout)


def raw_session(path):
    """A bare socket: greeting, then exact bytes in and out."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rwb", buffering=0)
    return s, f


def raw_exchange(f, data):
    f.write(data)
    return json.loads(f.readline())


async def main(qmp_path, raw_path, pid):
    q = QMPClient("ferrite-test")
    await q.connect(qmp_path)
    version = q.greeting.QMP.version  # the client checked the greeting's shape; this is its raw dict
    check(version["qemu"]["major"] >= 7 and version["package"].startswith("ferrite"), f"greeting names QEMU {version['qemu']} and {version['package']}")

    names = {c["name"] for c in await q.execute("query-commands")}
    wanted = {"qmp_capabilities", "query-status", "query-version", "query-cpus-fast", "query-block", "query-migrate",
              "stop", "cont", "system_reset", "system_powerdown", "quit", "human-monitor-command",
              "snapshot-save", "snapshot-load", "snapshot-delete", "query-jobs", "job-dismiss", "migrate-incoming", "send-key", "x-query-jit"}
    check(wanted <= names, f"query-commands lists {sorted(wanted - names) or 'every command asked for'}")

    status = await q.execute("query-status")
    check(status["status"] == "running" and status["running"] is True, f"query-status: {status}")

    cpus = await q.execute("query-cpus-fast")
    tids = {c["thread-id"] for c in cpus}
    check(len(cpus) == 2 and all(os.path.exists(f"/proc/{pid}/task/{t}") for t in tids) and len(tids) == 2,
          f"query-cpus-fast: two vCPUs on their own host threads {sorted(tids)}")

    # stop: STOP event, the state says so, guest time stands still; cont: RESUME.
    stop = asyncio.ensure_future(next_event(q, "STOP"))
    await q.execute("stop")
    await stop
    status = await q.execute("query-status")
    check(status == {"status": "paused", "running": False, "singlestep": False}, f"stop: STOP event, then {status}")
    regs1 = await q.execute("human-monitor-command", {"command-line": "info registers"})
    await asyncio.sleep(0.3)
    regs2 = await q.execute("human-monitor-command", {"command-line": "info registers"})
    check("RIP=" in regs1 and regs1 == regs2, "a paused vCPU's registers do not change")
    info = await q.execute("human-monitor-command", {"command-line": "info status"})
    check(info.strip() == "VM status: paused", f"info status through human-monitor-command: {info.strip()!r}")
    pci = await q.execute("human-monitor-command", {"command-line": "info pci"})
    check("Host bridge: PCI device 8086:1237" in pci and "Ethernet controller: PCI device 8086:100e" in pci and "BAR0:" in pci,
          "info pci lists the i440FX and the e1000 with its BARs")
    net = await q.execute("human-monitor-command", {"command-line": "info network"})
    check("model=e1000,macaddr=52:54:00:12:34:56" in net and "type=user" in net, f"info network: {net.strip()!r}")
    jit = (await q.execute("x-query-jit"))["human-readable-text"]
    check(jit.startswith("CPU#0\ntranslator ") and "\nCPU#1\ntranslator " in jit and re.search(r"^\d+ instructions in all", jit, re.M),
          f"x-query-jit: both vCPUs' translator counters: {jit[:200]!r}")
    hmp_jit = await q.execute("human-monitor-command", {"command-line": "info jit"})
    check(hmp_jit == jit, "info jit says what x-query-jit does, and a paused VM's counters stand still")
    mem = await q.execute("human-monitor-command", {"command-line": "xp /2xw 0x7000"})
    check(re.fullmatch(r"0000000000007000: 0x[0-9a-f]{8} 0x[0-9a-f]{8}\s*", mem) is not None, f"xp reads RAM: {mem.strip()!r}")
    resume = asyncio.ensure_future(next_event(q, "RESUME"))
    await q.execute("cont")
    await resume
    check((await q.execute("query-status"))["status"] == "running", "cont: RESUME event, running again")
    await q.execute("cont")
    check(True, "cont on a running machine succeeds, as QEMU's does")

    # Named snapshots as QEMU 7.2's jobs: the command returns, the job's states arrive as
    # JOB_STATUS_CHANGE events, query-jobs keeps it (with its error) until job-dismiss.
    async def job(cmd, args, timeout=120):
        await q.execute(cmd, args)
        seen = []

        async def wait():
            async for e in q.events:
                if e["event"] == "JOB_STATUS_CHANGE" and e["data"]["id"] == args["job-id"]:
                    seen.append(e["data"]["status"])
                    if e["data"]["status"] == "concluded":
                        return
        await asyncio.wait_for(wait(), timeout)
        return seen

    done = ["created", "running", "waiting", "pending", "concluded"]
    failed = ["created", "running", "aborting", "concluded"]
    states = await job("snapshot-save", {"job-id": "save0", "tag": "qmp-snap", "vmstate": "state", "devices": []})
    check(states == done, f"snapshot-save: {states}")
    jobs = await q.execute("query-jobs")
    check(jobs == [{"current-progress": 1, "status": "concluded", "total-progress": 1, "type": "snapshot-save", "id": "save0"}], f"query-jobs: {jobs}")
    await q.execute("job-dismiss", {"id": "save0"})
    check(await q.execute("query-jobs") == [], "job-dismiss forgets the job")
    listing = await q.execute("human-monitor-command", {"command-line": "info snapshots"})
    check("--        qmp-snap " in listing, f"info snapshots lists it: {listing.splitlines()[-1]!r}")
    states = await job("snapshot-load", {"job-id": "load0", "tag": "qmp-snap", "vmstate": "state", "devices": []})
    status = await q.execute("query-status")
    check(states == done and status["status"] == "running", f"snapshot-load: {states}, then {status['status']}")
    states = await job("snapshot-load", {"job-id": "load1", "tag": "nothere", "vmstate": "state", "devices": []})
    error = (await q.execute("query-jobs"))[0].get("error", "")
    check(states == failed and error.startswith("Snapshot 'nothere' does not exist"), f"a missing snapshot: {states}, {error!r}")
    states = await job("snapshot-save", {"job-id": "save1", "tag": "x", "vmstate": "state", "devices": ["zz"]})
    error = (await q.execute("query-jobs"))[0].get("error", "")
    check(states == failed and error == "No block device node 'zz'", f"an unknown device: {error!r}")
    states = await job("snapshot-delete", {"job-id": "del0", "tag": "qmp-snap", "devices": []})
    listing = await q.execute("human-monitor-command", {"command-line": "info snapshots"})
    check(states == done and listing == "There is no snapshot available.\n", f"snapshot-delete: {states}, {listing.strip()!r}")
    for j in ["load0", "load1", "save1", "del0"]:
        await q.execute("job-dismiss", {"id": j})

    for cmd, args, cls, fragment in [
        ("no-such-command", None, "CommandNotFound", "no-such-command"),
        ("stop", {"force": True}, "GenericError", "'force' is unexpected"),
        ("human-monitor-command", {}, "GenericError", "'command-line' is missing"),
        ("human-monitor-command", {"command-line": 5}, "GenericError", "expected: string"),
        ("query-balloon", None, "DeviceNotActive", "balloon"),
        ("snapshot-save", {"job-id": "9", "tag": "t", "vmstate": "s", "devices": []}, "GenericError", "Invalid job ID '9'"),
        ("job-dismiss", {"id": "nope"}, "GenericError", "Job not found"),
        ("migrate-incoming", {"uri": "tcp:127.0.0.1:0"}, "GenericError", "'-incoming' was not specified"),
        ("send-key", {"keys": [{"type": "qcode", "data": "nope"}]}, "GenericError", "does not accept value 'nope'"),
        ("screendump", {"filename": "/tmp/ferrite-screendump"}, "GenericError", "no console to take a screendump"),
    ]:
        try:
            await q.execute(cmd, args)
            check(False, f"{cmd} {args} fails")
        except ExecuteError as e:
            info = e.error.error
            check(info.class_ == cls and fragment in info.desc, f"{cmd} {args}: {info.class_}: {info.desc}")

    # A second client of the same socket is told it must wait its turn, and let go.
    s, f = raw_session(qmp_path)
    busy = json.loads(f.readline())
    check("error" in busy and "another QMP client" in busy["error"]["desc"], f"a second client: {busy['error']['desc']}")
    check(f.readline() == b"", "and is disconnected")
    s.close()

    # The other monitor, raw: negotiation rules and malformed input.
    s, f = raw_session(raw_path)
    check("QMP" in json.loads(f.readline()), "second monitor greets")
    r = raw_exchange(f, b'{"execute": "query-status"}\n')
    check(r["error"]["class"] == "CommandNotFound" and "qmp_capabilities" in r["error"]["desc"], f"commands before negotiation: {r['error']['desc']}")
    r = raw_exchange(f, b'{"execute": "qmp_capabilities", "id": "neg"}\n')
    check(r == {"return": {}, "id": "neg"}, f"negotiation echoes the id: {r}")
    r = raw_exchange(f, b'{"execute": "query-status", ]\n')
    check("JSON parse error" in r["error"]["desc"], f"malformed JSON: {r['error']['desc']}")
    r = raw_exchange(f, b'[1, 2]\n')
    check("must be a JSON object" in r["error"]["desc"], f"not an object: {r['error']['desc']}")
    r = raw_exchange(f, b'{"execute": "query-status", "id": 7, "extra": 1}\n')
    check("'extra' is unexpected" in r["error"]["desc"] and r["id"] == 7, f"unexpected member: {r['error']['desc']}")
    # A request split across writes, then two in one write.
    f.write(b'{"execute": "query-')
    await asyncio.sleep(0.1)
    r = raw_exchange(f, b'version", "id": 1}')
    check(r["id"] == 1 and r["return"]["qemu"]["major"] >= 7, "a request split across writes")
    f.write(b'{"execute": "query-status", "id": 2}{"execute": "query-kvm", "id": 3}')
    ids = [json.loads(f.readline())["id"], json.loads(f.readline())["id"]]
    check(ids == [2, 3], "two requests in one write, answered in order")

    # The guest sees the ACPI power button and powers off; both clients hear of it.
    powerdown = asyncio.ensure_future(next_event(q, "POWERDOWN"))
    shutdown = asyncio.ensure_future(next_event(q, "SHUTDOWN", timeout=120))
    await q.execute("system_powerdown")
    await powerdown
    e = await shutdown
    check(e["data"] == {"guest": True, "reason": "guest-shutdown"}, f"system_powerdown: the guest shut down ({e['data']})")
    raw_events = []
    while True:
        line = f.readline()
        if not line:
            break
        raw_events.append(json.loads(line).get("event"))
    check("POWERDOWN" in raw_events and "SHUTDOWN" in raw_events, f"the other monitor saw {raw_events}")
    s.close()
    try:
        await q.disconnect()
    except EOFError:
        pass  # ferrite exited after the guest's power-off, as QEMU does
    print("QMP-SESSION-OK", flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
