#!/usr/bin/env python3
"""Drive the real, unmodified exchange clients against a gatehouse proxy.

Usage:  clients.py '<json spec>'
Spec:   {"base": "http://127.0.0.1:PORT", "client": "<name>", "call": "<name>",
         "key": {"id": "...", "secret": "..." | "private_key_pem": "..."}, "repeat": 1|2}
Prints one JSON line: {"results": [<one per repeat>]}, each result either
         {"ok": true, "data": <parsed response or summary>}
      or {"ok": false, "error": "<exception class>", "message": "...", "status": <int|null>, "code": <str|int|null>}

Clients (pinned in tests/requirements.txt): pyupbit 0.2.34, ccxt 4.5.90 (upbit, binance),
python-binance 1.0.37, http-message-signatures 3.0.0 (RFC 9421). Only base URLs are changed,
the way exchange-auth.md §3 shows; signing code is the clients' own. "repeat": 2 sends the
*identical* signed request twice (nonce / timestamp pinned) to exercise replay defences.
"""
import base64
import datetime
import hashlib
import json
import sys
import uuid

FIXED_UUID = None
FIXED_MS = None


def pin_upbit_nonce(module):
    """Make a client's uuid4 return one fixed value so two calls carry the same nonce."""
    fixed = uuid.uuid4()
    module.uuid.uuid4 = lambda: fixed


def result_ok(data):
    return {"ok": True, "data": data}


def result_err(exc):
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    return {"ok": False, "error": type(exc).__name__, "message": str(exc)[:500], "status": status, "code": code}


# ---------------------------------------------------------------- pyupbit
def pyupbit_client(spec):
    import pyupbit
    import pyupbit.request_api as ra

    upstream = "https://api.upbit.com"
    base = spec["base"]
    for name in ("_call_get", "_call_post", "_call_delete"):
        orig = getattr(ra, name)

        def wrapper(url, _orig=orig, **kw):
            if url.startswith(upstream):
                url = base + url[len(upstream):]
            return _orig(url, **kw)

        setattr(ra, name, wrapper)
    return pyupbit, ra, pyupbit.Upbit(spec["key"]["id"], spec["key"]["secret"])


def run_pyupbit(spec):
    pyupbit, ra, up = pyupbit_client(spec)
    import pyupbit.exchange_api as ex_api
    if spec.get("repeat", 1) > 1:
        pin_upbit_nonce(ex_api)
    call = spec["call"]
    upstream = "https://api.upbit.com"
    out = []
    for _ in range(spec.get("repeat", 1)):
        try:
            if call == "accounts":
                # Public method; errors propagate only from get_balances (pyupbit swallows others).
                data, req = up.get_balances(contain_req=True)
                out.append(result_ok({"balances": data, "remaining_req": req}))
            elif call == "order_get":
                data = {"market": "KRW-BTC", "state": "wait", "page": 1, "limit": 100, "order_by": "desc"}
                res = ra._send_get_request(upstream + "/v1/orders", headers=up._request_headers(data), data=data)
                out.append(result_ok(res[0] if isinstance(res, tuple) else res))
            elif call == "order_get_public":
                res = up.get_order("KRW-BTC", state="wait", contain_req=True)
                out.append(result_ok(res[0] if isinstance(res, tuple) else res))
            elif call == "order_post":
                data = {"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": "1000000", "ord_type": "limit"}
                res = ra._send_post_request(upstream + "/v1/orders", headers=up._request_headers(data), data=data)
                out.append(result_ok(res[0] if isinstance(res, tuple) else res))
            elif call == "order_post_public":
                res = up.buy_limit_order("KRW-BTC", 1000000, 0.001)
                out.append(result_ok(res) if res is not None else {"ok": False, "error": "swallowed", "message": "pyupbit returned None"})
            elif call == "order_post_tricky":
                # A value whose pyupbit hash form differs from the documented one (exchange-auth.md §1.3).
                data = {"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": "1000000",
                        "ord_type": "limit", "identifier": "my id/1:+x"}
                res = ra._send_post_request(upstream + "/v1/orders", headers=up._request_headers(data), data=data)
                out.append(result_ok(res[0] if isinstance(res, tuple) else res))
            elif call == "order_delete":
                res = up.cancel_order("9ca023a5-851b-4fec-9f0a-48cd83c2eaae")
                out.append(result_ok(res) if res is not None else {"ok": False, "error": "swallowed", "message": "pyupbit returned None"})
            elif call == "order_delete_raw":
                data = {"uuid": "9ca023a5-851b-4fec-9f0a-48cd83c2eaae"}
                res = ra._send_delete_request(upstream + "/v1/order", headers=up._request_headers(data), data=data)
                out.append(result_ok(res[0] if isinstance(res, tuple) else res))
            else:
                raise SystemExit(f"unknown pyupbit call {call}")
        except Exception as e:  # noqa: BLE001 — we report whatever the client raised
            out.append(result_err(e))
    return out


# ---------------------------------------------------------------- ccxt
def ccxt_upbit(spec):
    import ccxt
    ex = ccxt.upbit({"apiKey": spec["key"]["id"], "secret": spec["key"]["secret"], "enableRateLimit": False})
    ex.urls["api"] = {"public": spec["base"], "private": spec["base"]}
    return ex


def ccxt_binance(spec):
    import ccxt
    secret = spec["key"].get("private_key_pem") or spec["key"]["secret"]
    ex = ccxt.binance({"apiKey": spec["key"]["id"], "secret": secret, "enableRateLimit": False})
    api = dict(ex.urls["api"])
    base = spec["base"]
    api.update({"public": base + "/api/v3", "private": base + "/api/v3", "v1": base + "/api/v1",
                "sapi": base + "/sapi/v1", "sapiV2": base + "/sapi/v2"})
    ex.urls["api"] = api
    return ex


def run_ccxt(spec):
    client = spec["client"]
    ex = ccxt_upbit(spec) if client == "ccxt_upbit" else ccxt_binance(spec)
    if spec.get("repeat", 1) > 1:
        if client == "ccxt_upbit":
            fixed = str(uuid.uuid4())
            ex.uuid = lambda: fixed
        else:
            fixed_ms = ex.milliseconds()
            ex.nonce = lambda: fixed_ms
            ex.options["broker"] = {}
    call = spec["call"]
    out = []
    for _ in range(spec.get("repeat", 1)):
        try:
            if call == "accounts":
                out.append(result_ok(ex.private_get_accounts()))
            elif call == "orders_closed":
                out.append(result_ok(ex.private_get_orders_closed(
                    {"market": "KRW-BTC", "state": "done", "start_time": "2024-01-01T00:00:00+09:00"})))
            elif call == "order_post" and client == "ccxt_upbit":
                out.append(result_ok(ex.private_post_orders({"market": "KRW-BTC", "side": "bid", "ord_type": "limit",
                                                             "price": "1000000", "volume": "0.001", "identifier": "my id/1"})))
            elif call == "order_delete":
                out.append(result_ok(ex.private_delete_order({"uuid": "9ca023a5-851b-4fec-9f0a-48cd83c2eaae"})))
            elif call == "account":
                out.append(result_ok(ex.private_get_account()))
            elif call == "order_post":
                params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                          "quantity": "0.001", "price": "50000"}
                if spec.get("repeat", 1) > 1:
                    params["newClientOrderId"] = "fixed-id-1"
                out.append(result_ok(ex.private_post_order(params)))
            else:
                raise SystemExit(f"unknown ccxt call {call}")
        except Exception as e:  # noqa: BLE001
            out.append(result_err(e))
    return out


# ---------------------------------------------------------------- python-binance
def run_python_binance(spec):
    import binance.base_client as bc
    from binance.client import Client

    base = spec["base"]

    class LocalClient(Client):
        API_URL = base + "/api"
        MARGIN_API_URL = base + "/sapi"
        FUTURES_URL = base + "/fapi"
        FUTURES_COIN_URL = base + "/dapi"

    key = spec["key"]
    if spec.get("repeat", 1) > 1:
        import time as _time
        fixed = _time.time()
        bc.time.time = lambda: fixed
    out = []
    try:
        if "private_key_pem" in key:
            c = LocalClient(key["id"], private_key=key["private_key_pem"], ping=True)
        else:
            c = LocalClient(key["id"], key["secret"], ping=True)
    except Exception as e:  # noqa: BLE001
        return [result_err(e)]
    call = spec["call"]
    for _ in range(spec.get("repeat", 1)):
        try:
            if call == "account":
                out.append(result_ok(c.get_account()))
            elif call == "order_post":
                params = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="50000")
                if spec.get("repeat", 1) > 1:
                    params["newClientOrderId"] = "fixed-id-1"
                out.append(result_ok(c.create_order(**params)))
            else:
                raise SystemExit(f"unknown python-binance call {call}")
        except Exception as e:  # noqa: BLE001
            out.append(result_err(e))
    return out


# ---------------------------------------------------------------- RFC 9421
def run_rfc9421(spec):
    import requests
    from http_message_signatures import HTTPMessageSigner, algorithms
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = spec["key"]

    class Resolver:
        def resolve_private_key(self, key_id):
            if "private_key_pem" in key:
                return load_pem_private_key(key["private_key_pem"].encode(), password=None)
            return key["secret"].encode()

        def resolve_public_key(self, key_id):  # not used for signing
            raise NotImplementedError

    alg = algorithms.ED25519 if "private_key_pem" in key else algorithms.HMAC_SHA256
    signer = HTTPMessageSigner(signature_algorithm=alg, key_resolver=Resolver())
    call = spec["call"]
    if call == "order_post":
        body = json.dumps({"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": "1000000"}).encode()
        req = requests.Request("POST", spec["base"] + "/native/v1/orders?dry_run=false", data=body,
                               headers={"Content-Type": "application/json"}).prepare()
        components = ("@method", "@authority", "@path", "@query", "content-digest")
    elif call == "accounts":
        req = requests.Request("GET", spec["base"] + "/native/v1/accounts?currency=KRW").prepare()
        components = ("@method", "@authority", "@path", "@query")
    else:
        raise SystemExit(f"unknown rfc9421 call {call}")
    signer.sign(req, key_id=key["id"], created=datetime.datetime.now(tz=datetime.timezone.utc),
                nonce=base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                covered_component_ids=components, label="sig1", body=req.body if req.body else None)
    out = []
    with requests.Session() as s:
        for _ in range(spec.get("repeat", 1)):
            r = s.send(req)
            try:
                body = r.json()
            except ValueError:
                body = r.text[:200]
            if r.ok:
                out.append(result_ok(body))
            else:
                code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                out.append({"ok": False, "error": "HTTPError", "message": str(body)[:500], "status": r.status_code, "code": code})
    return out


def main():
    spec = json.loads(sys.argv[1])
    runner = {
        "pyupbit": run_pyupbit,
        "ccxt_upbit": run_ccxt,
        "ccxt_binance": run_ccxt,
        "python_binance": run_python_binance,
        "rfc9421": run_rfc9421,
    }[spec["client"]]
    print(json.dumps({"results": runner(spec)}, default=str))


if __name__ == "__main__":
    main()
