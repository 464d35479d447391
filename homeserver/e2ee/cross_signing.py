"""Cross-signing (the spec's "Cross-signing"): `POST /keys/device_signing/upload`
and `POST /keys/signatures/upload` for this server's users.

* A user's master, self-signing and user-signing keys each hold one ed25519 key
  and name their usage; the self-signing and user-signing keys must be signed by
  the master key (the one uploaded with them, or the stored one). Replacing keys
  needs user-interactive auth unless it is the first upload (no master key stored)
  or the uploaded keys are exactly those stored (the route asks `needs_auth`).
* Signatures are verified before they are stored, each against the key it is
  claimed to be made with, on an object that must be the stored key it signs:
  the user's own devices by their self-signing key, their own master key by one
  of their devices, and other local users' master keys by their user-signing key.
  What fails is reported in `failures` (`M_INVALID_SIGNATURE`, `M_NOT_FOUND` for a
  key the server does not know, `M_MISSING_PARAM` when the signing key is not
  uploaded yet). Other servers' users' keys are not fetched yet (federation comes
  later): signatures on them fail with `M_NOT_FOUND`.
* Uploaded keys and signatures on a user's own keys mark their device list
  changed; a signature on another user's master key is the signer's alone (no one
  else is shown it), so only the signer is told that user changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.e2ee.keys import MAX_ID_LENGTH, DeviceListChanges, ed25519_verify, invalid
from homeserver.errors import MatrixError
from homeserver.records.e2ee import CrossSigningSignature

if TYPE_CHECKING:
    from homeserver.identifiers import LocalServer
    from homeserver.storage.e2ee_keys import E2eeKeyStore

KEY_TYPES = ("master", "self_signing", "user_signing")
BODY_FIELDS = {"master": "master_key", "self_signing": "self_signing_key", "user_signing": "user_signing_key"}
MAX_SIGNED_OBJECTS = 1000


def public_key(key: dict[str, Any]) -> str:
    """The ed25519 public key of a checked cross-signing key."""
    return next(iter(key["keys"].values()))


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _check_key(user_id: str, key_type: str, key: object) -> dict[str, Any]:
    name = BODY_FIELDS[key_type]
    if not isinstance(key, dict):
        raise invalid(f"{name} must be an object")
    if key.get("user_id") != user_id:
        raise invalid(f"{name}.user_id must be the requesting user")
    usage = key.get("usage")
    if not isinstance(usage, list) or key_type not in usage or not all(isinstance(u, str) for u in usage):
        raise invalid(f"{name}.usage must include {key_type!r}")
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise invalid(f"{name}.keys must hold exactly one key")
    key_id, value = next(iter(keys.items()))
    if (
        not isinstance(value, str) or len(value) > MAX_ID_LENGTH
        or key_id != f"ed25519:{value}"
    ):
        raise invalid(f"{name}.keys must map ed25519:<public key> to the public key")
    sigs = key.get("signatures", {})
    if not isinstance(sigs, dict) or len(str(sigs)) > 8192:
        raise invalid(f"{name}.signatures must be an object")
    return key


class CrossSigningService:
    def __init__(self, *, store: E2eeKeyStore, local_server: LocalServer, device_lists: DeviceListChanges) -> None:
        self.store = store
        self.local_server = local_server
        self.device_lists = device_lists

    def check_upload(self, user_id: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The keys of an upload, checked in form (signatures by the master key are
        checked in `upload`, against the master key in force)."""
        return {t: _check_key(user_id, t, body[f]) for t, f in BODY_FIELDS.items() if body.get(f) is not None}

    async def needs_auth(self, user_id: str, keys: dict[str, dict[str, Any]]) -> bool:
        stored = await self.store.get_cross_signing_keys(user_id)
        if "master" not in stored:
            return False
        return any(stored.get(t) != k for t, k in keys.items())

    async def upload(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        stored = await self.store.get_cross_signing_keys(user_id)
        master = keys.get("master") or stored.get("master")
        if master is None and keys:
            raise MatrixError(400, "M_MISSING_PARAM", "Must provide a master cross-signing key")
        for key_type in ("self_signing", "user_signing"):
            key = keys.get(key_type)
            if key is None or master is None:
                continue
            master_pub = public_key(master)
            if not ed25519_verify(key, user_id, f"ed25519:{master_pub}", master_pub):
                raise MatrixError(
                    400, "M_INVALID_SIGNATURE", f"{BODY_FIELDS[key_type]} is not signed by the master key"
                )
        changed = {t: k for t, k in keys.items() if stored.get(t) != k}
        if not changed:
            return
        await self.store.set_cross_signing_keys(user_id, changed)
        await self.device_lists.mark_changed(user_id)

    # --- signatures ---

    async def upload_signatures(self, signer: str, body: dict[str, Any]) -> dict[str, Any]:
        """Verify and store the signatures of a /keys/signatures/upload body; returns
        its `failures`."""
        if sum(len(v) if isinstance(v, dict) else 1 for v in body.values()) > MAX_SIGNED_OBJECTS:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_SIGNED_OBJECTS} signed keys an upload")
        signer_cross = await self.store.get_cross_signing_keys(signer)
        failures: dict[str, dict[str, Any]] = {}
        accepted: list[CrossSigningSignature] = []
        changed: set[str] = set()
        for target_user, objects in body.items():
            if not isinstance(objects, dict):
                raise MatrixError(400, "M_BAD_JSON", "Each user's entry must be an object of signed keys")
            for key_id, obj in objects.items():
                try:
                    sigs = await self._verify_one(signer, signer_cross, target_user, key_id, obj)
                except MatrixError as e:
                    failures.setdefault(target_user, {})[key_id] = {"errcode": e.errcode, "error": e.message}
                    continue
                accepted.extend(sigs)
                changed.add(target_user)
        await self.store.add_signatures(accepted)
        for user_id in sorted(changed):
            if user_id == signer:
                await self.device_lists.mark_changed(user_id)
            else:
                await self.device_lists.signature_changed(signer, user_id)
        return failures

    async def _verify_one(
        self, signer: str, signer_cross: dict[str, dict[str, Any]], target_user: str, key_id: str, obj: object
    ) -> list[CrossSigningSignature]:
        if not isinstance(obj, dict):
            raise invalid("A signed key must be an object")
        if obj.get("user_id") != target_user:
            raise invalid("The signed key's user_id is not the user it is uploaded for")
        sigs = obj.get("signatures")
        mine = sigs.get(signer) if isinstance(sigs, dict) else None
        if not isinstance(mine, dict) or not mine:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "No signature by the uploading user")
        if not self.local_server.is_mine(target_user):
            raise MatrixError(404, "M_NOT_FOUND", "Keys of other servers' users are not known here yet")
        if target_user == signer:
            target_cross = signer_cross
            master = target_cross.get("master")
            if master is not None and key_id == public_key(master):
                return await self._own_master_by_devices(signer, key_id, master, obj, mine)
            devices = await self.store.get_device_keys(signer, [key_id])
            if key_id not in devices:
                raise MatrixError(404, "M_NOT_FOUND", f"Unknown device or key {key_id!r}")
            return [self._by_cross_key(signer, signer_cross, "self_signing", key_id, devices[key_id], obj)]
        target_master = (await self.store.get_cross_signing_keys(target_user)).get("master")
        if target_master is None or key_id != public_key(target_master):
            raise MatrixError(404, "M_NOT_FOUND", f"{key_id!r} is not {target_user}'s master key")
        return [self._by_cross_key(signer, signer_cross, "user_signing", key_id, target_master, obj)]

    def _by_cross_key(
        self, signer: str, signer_cross: dict[str, dict[str, Any]], key_type: str, target_key_id: str,
        stored: dict[str, Any], obj: dict[str, Any],
    ) -> CrossSigningSignature:
        signing_key = signer_cross.get(key_type)
        if signing_key is None:
            raise MatrixError(400, "M_MISSING_PARAM", f"No {key_type} key uploaded to sign with")
        if _strip(obj) != _strip(stored):
            raise MatrixError(400, "M_INVALID_SIGNATURE", "The signed key is not the key stored")
        pub = public_key(signing_key)
        sig_key_id = f"ed25519:{pub}"
        if not ed25519_verify(obj, signer, sig_key_id, pub):
            raise MatrixError(400, "M_INVALID_SIGNATURE", f"Invalid signature by the {key_type} key")
        return CrossSigningSignature(
            stored["user_id"], target_key_id, signer, sig_key_id, obj["signatures"][signer][sig_key_id]
        )

    async def _own_master_by_devices(
        self, user_id: str, key_id: str, master: dict[str, Any], obj: dict[str, Any], mine: dict[str, Any]
    ) -> list[CrossSigningSignature]:
        if _strip(obj) != _strip(master):
            raise MatrixError(400, "M_INVALID_SIGNATURE", "The signed key is not the master key stored")
        devices = await self.store.get_device_keys(user_id)
        out: list[CrossSigningSignature] = []
        for sig_key_id in mine:
            if sig_key_id == f"ed25519:{key_id}":
                continue  # the master key's own signature, if any
            device_id = sig_key_id.removeprefix("ed25519:")
            device = devices.get(device_id)
            device_pub = device.get("keys", {}).get(sig_key_id) if device else None
            if not isinstance(device_pub, str) or not sig_key_id.startswith("ed25519:"):
                raise MatrixError(404, "M_NOT_FOUND", f"Unknown signing device {sig_key_id!r}")
            if not ed25519_verify(obj, user_id, sig_key_id, device_pub):
                raise MatrixError(400, "M_INVALID_SIGNATURE", f"Invalid signature by {sig_key_id}")
            out.append(CrossSigningSignature(user_id, key_id, user_id, sig_key_id, mine[sig_key_id]))
        if not out:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "No device signature on the master key")
        return out
