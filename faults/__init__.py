"""Fault injection: the platform under steady load while its parts are killed, then a count of what survived.

    make faults            (python -m faults [--phase-seconds 6] [--report faults-report.md])

Everything it starts is its own, on free ports, in a temporary folder: a
PostgreSQL cluster (initdb), a Mosquitto with persistence, `metropole
broker` on that cluster, `metropole agent`, a notification receiver; it
never touches the machine's shared PostgreSQL (5432) or Mosquitto (1883).

    services.py   the PostgreSQL cluster, Mosquitto and our processes, each with kill -9 / restart
    receiver.py   the notification receiver (a process of its own, fsyncs before it answers)
    load.py       MQTT (QoS 1) and HTTP devices sending numbered measures, and the ledger of what was accepted
    run.py        the phases (one fault each), the drain, the verification and the report
"""
