#!/usr/bin/env python3
"""Interop with an independent JOSE implementation (joserfc), for tests/interop.rs.

  jose_interop.py mint DIR     a fresh Ed25519 key pair; its public key as DIR/key.pem, DIR/key.jwk
                               and DIR/keys.jwks (with an RSA key beside it, as vendors publish);
                               tokens for every alg / aud / kid / typ combination in DIR/tokens.json
  jose_interop.py verify KEY   reads tokens (one per line) on stdin, verifies each with the public
                               key file KEY (PEM, JWK or JWK Set); prints one JSON result per line
"""
import json
import pathlib
import sys
import warnings

from joserfc import jws, jwt
from joserfc.jwk import KeySet, OKPKey, RSAKey, import_key

# joserfc warns that EdDSA is deprecated by RFC 9864; minting it is the point here.
warnings.simplefilter("ignore")

ALGS = ["EdDSA", "Ed25519"]
KID = "vendor-jose"


def mint(out: pathlib.Path) -> None:
    key = OKPKey.generate_key("Ed25519", parameters={"kid": KID, "use": "sig"})
    other = RSAKey.generate_key(2048, parameters={"kid": "web-signing", "use": "sig"})
    (out / "key.pem").write_bytes(key.as_pem(private=False))
    (out / "key.jwk").write_text(json.dumps(key.as_dict(private=False)))
    (out / "keys.jwks").write_text(json.dumps(KeySet([other, key]).as_dict(private=False)))
    cases = []
    for alg in ALGS:
        for aud in ["zizq", ["zizq-cloud", "zizq"]]:
            for kid in [True, False]:
                for typ in [True, False]:
                    header = {"alg": alg}
                    if kid:
                        header["kid"] = KID
                    if typ:
                        header["typ"] = "JWT"
                    claims = {"sub": "Acme Corp", "aud": aud, "iat": 1700000000, "exp": 4102444800,
                              "tier": "pro", "seats": 25}
                    payload = json.dumps(claims, separators=(",", ":")).encode()
                    token = jws.serialize_compact(header, payload, key, algorithms=[alg])
                    cases.append({"alg": alg, "aud": aud, "kid": kid, "typ": typ, "token": token})
    (out / "tokens.json").write_text(json.dumps(cases, indent=1))


def load_key(path: pathlib.Path):
    text = path.read_text()
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        return KeySet.import_key_set(data) if "keys" in data else import_key(data)
    return OKPKey.import_key(text.encode())


def verify(path: pathlib.Path) -> None:
    key = load_key(path)
    for line in sys.stdin:
        token = line.strip()
        if not token:
            continue
        try:
            decoded = jwt.decode(token, key, algorithms=ALGS)
            print(json.dumps({"ok": True, "header": decoded.header, "claims": decoded.claims}))
        except Exception as e:  # report, do not crash: the test decides
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("mint", "verify"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    (mint if sys.argv[1] == "mint" else verify)(pathlib.Path(sys.argv[2]))
