"""Rendering model objects into the objects of the SLAP protocol (SlapOS' wire objects,
core.marshal): a computer's full information, a partition, a request's answer.

Depends on core (marshal, states) and on model objects only through their attributes;
no I/O. The partition entries and the computer document follow the contract of
services.desired.DesiredStateRenderer (they depend on nothing that does not bump the
computer's serial or the hosted instance's revision), so they are cached like the native
desired state. What changes without either (published connection parameters) is left
out of them and served live by registerComputerPartition and request answers.
"""
from __future__ import annotations

import ipaddress
import json

from ..core import marshal
from ..core.fields import ID_RE
from ..core.marshal import SlapObject
from ..core.states import DESTROYED
from .trees import tree_root

FREE_STATE = DESTROYED      # a free partition: nothing to deploy, nothing to keep


def slap_text(value) -> str:
    """A parameter as SlapOS masters hand it out: a string (JSON for nested values)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def slap_texts(params: dict) -> dict:
    return {str(k): slap_text(v) for k, v in (params or {}).items()}


def timestamp(inst) -> str:
    """What makes a stock node deploy a partition again when it changes: the instance's
    creation (a new instance on the same partition) and its revision."""
    return f"{int((inst.created_at or 0) * 1000)}.{inst.revision}"


def software_release(url: str | None, computer_id: str, state: str = "available"):
    if url is None:
        return None
    return SlapObject("SoftwareRelease", (url, computer_id),
                      {"_software_release": url, "_computer_guid": computer_id,
                       "_requested_state": state, "_software_instance_list": []})


def shared_entry(shared) -> dict:
    """One entry of a host's ``slave_instance_list``: the shared instance's parameters,
    its id as ``slave_reference`` (what the host publishes its connection under)."""
    entry = slap_texts(shared.parameters)
    entry.update(slave_reference=shared.id, slave_title=shared.reference,
                 slap_software_type=shared.software_type)
    return entry


def parameter_dict(app, comp_id: str, p, inst) -> dict:
    """The instance's parameters and the reserved keys a stock node and recipes read."""
    return _parameters(app, inst, comp_id, p.id, [(p.id, p.address)],
                       [shared_entry(app.instances[sid]) for sid in inst.shared_ids
                        if sid in app.instances])


def _parameters(app, inst, comp_id: str, partition_id: str, ip_list: list,
                shared: list) -> dict:
    params = slap_texts(inst.parameters)
    params.update(
        timestamp=timestamp(inst), slap_software_type=inst.software_type,
        instance_title=inst.reference, root_instance_title=tree_root(app, inst).reference,
        slap_computer_id=comp_id, slap_computer_partition_id=partition_id,
        slap_software_release_url=inst.software_url,
        ip_list=ip_list, full_ip_list=[], full_address_list=[], slave_instance_list=shared)
    return params


def partition_object(app, comp_id: str, p, inst, connection: bool = False) -> SlapObject:
    """A ComputerPartition; free (no instance) it is ``destroyed`` with no release, which
    a stock node skips. ``connection``: include the published connection parameters
    (live answers only, never the cached document)."""
    attrs = {"_computer_id": comp_id, "_partition_id": p.id, "_request_dict": None,
             "_filter_dict": {}}
    if inst is None:
        attrs.update(_instance_guid=None, _requested_state=FREE_STATE,
                     _software_release_document=None,
                     _parameter_dict={"ip_list": [(p.id, p.address)],
                                      "full_address_list": [], "slave_instance_list": []})
    else:
        attrs.update(_instance_guid=inst.id, _requested_state=inst.requested_state,
                     _software_release_document=software_release(inst.software_url,
                                                                  comp_id),
                     _parameter_dict=parameter_dict(app, comp_id, p, inst))
        if connection:
            attrs["_connection_dict"] = slap_texts(inst.connection)
    if connection and "_connection_dict" not in attrs:
        attrs["_connection_dict"] = {}
    return SlapObject("ComputerPartition", (comp_id, p.id, None), attrs)


def partition_fragment(app, comp, p, inst) -> str:
    """One partition of a computer's full information, encoded (cached per revision):
    the bytes ``marshal.encode_fragment(partition_object(...))`` writes, the frame
    written at once, the release's document too; only the parameters go through the
    generic encoder."""
    if inst is None:
        return marshal.encode_fragment(partition_object(app, comp.id, p, inst))
    cid, pid = marshal.string_element(comp.id), marshal.string_element(p.id)
    counter = [3]            # i1 the object, i2 its dictionary, i3 the _filter_dict
    params = marshal.encode_fragment(parameter_dict(app, comp.id, p, inst), counter)
    if inst.software_url is None:
        release = "<none/>"
    else:
        release, counter[0] = _release_fragment(inst.software_url, comp.id, counter[0])
    return ('<object id="i1" module="slapos.slap.slap" class="ComputerPartition">'
            f'<tuple>{cid}{pid}<none/></tuple><dictionary id="i2">'
            f'<string>_computer_id</string>{cid}'
            '<string>_filter_dict</string><dictionary id="i3"></dictionary>'
            f'<string>_instance_guid</string>{marshal.string_element(inst.id)}'
            f'<string>_parameter_dict</string>{params}'
            f'<string>_partition_id</string>{pid}'
            '<string>_request_dict</string><none/>'
            f'<string>_requested_state</string>{marshal.string_element(inst.requested_state)}'
            f'<string>_software_release_document</string>{release}'
            '</dictionary></object>')


def _release_fragment(url: str, computer_id: str, last_id: int) -> tuple[str, int]:
    """The encoded SoftwareRelease (``software_release(url, computer_id)``) of a partition
    entry whose ids reached ``last_id``, and the last id it used."""
    url, cid = marshal.string_element(url), marshal.string_element(computer_id)
    return ('<object id="i%d" module="slapos.slap.slap" class="SoftwareRelease">'
            f'<tuple>{url}{cid}</tuple><dictionary id="i%d">'
            f'<string>_computer_guid</string>{cid}'
            '<string>_requested_state</string><string>available</string>'
            '<string>_software_instance_list</string><list id="i%d"></list>'
            f'<string>_software_release</string>{url}</dictionary></object>'
            % (last_id + 1, last_id + 2, last_id + 3)), last_id + 3


def computer_document(app, comp, serial: int, fragments) -> bytes:
    """A computer's full information (getFullComputerInformation) from its encoded
    partitions: a Computer with its releases (desired state) and every partition."""
    releases = [software_release(sw.url, comp.id, sw.state) for sw in comp.software.values()]
    cid = marshal.encode_fragment(comp.id)
    return ("<marshal>"
            '<object id="c0" module="slapos.slap.slap" class="Computer">'
            f"<tuple>{cid}</tuple><dictionary id=\"c1\">"
            f"<string>_computer_id</string>{cid}"
            '<string>_computer_partition_list</string><list id="c2">'
            + "".join(fragments) +
            "</list><string>_software_release_list</string>"
            + marshal.encode_fragment(releases) +
            "</dictionary></object></marshal>").encode("utf-8")


def request_answer(app, inst) -> SlapObject | None:
    """The answer to requestComputerPartition: a SoftwareInstance carrying everything a
    stock client reads of it without asking again; None while the instance has no
    partition (or host) yet (the caller answers 408). A delegated instance is answered
    once the peer reports where it is served (``delegated_answer``)."""
    if inst.delegated and inst.partition_id is None:
        return delegated_answer(app, inst)
    serving = inst
    if inst.shared:
        serving = app.instances.get(inst.host_id) if inst.host_id else None
    if serving is None or serving.partition_id is None:
        return None
    comp = app.computers[serving.computer_id]
    p = comp.partitions[serving.partition_id]
    if inst.shared:
        params = shared_parameters(inst)
    else:
        params = parameter_dict(app, comp.id, p, inst)
    return _software_instance(inst, comp.id, p.id, [(p.id, p.address)], params)


def shared_parameters(inst) -> dict:
    """What a shared instance's answer carries: its parameters and reserved keys."""
    params = slap_texts(inst.parameters)
    params.update(timestamp=timestamp(inst), slap_software_type=inst.software_type,
                  instance_title=inst.reference)
    return params


def _software_instance(inst, computer_id: str, partition_id: str, ip_list: list,
                       params: dict) -> SlapObject:
    """A request's answer: the instance as served on that computer's partition."""
    return SlapObject("SoftwareInstance", (), {
        "_instance_guid": inst.id, "_requested_state": inst.requested_state,
        "_parameter_dict": params, "_connection_dict": slap_texts(inst.connection),
        "_software_release_document": software_release(inst.software_url, computer_id),
        "slap_computer_id": computer_id, "slap_computer_partition_id": partition_id,
        "slap_software_release_url": inst.software_url,
        "slap_software_type": inst.software_type, "ip_list": ip_list,
        "full_ip_list": []})


def delegated_answer(app, inst) -> SlapObject | None:
    """The answer for an instance a peer serves: the computer and partition at the end
    of its delegation chain (as the peers reported them, many hops away maybe) and the
    connection parameters relayed back; None until the chain ends at a partition (for
    a shared instance: at its host's partition, which the far master reports)."""
    fwd = app.forwards.get(inst.id)
    end = fwd.chain[-1] if fwd is not None and fwd.chain else {}
    computer, partition = end.get("computer"), end.get("partition")
    # what the peers reported is data, which a stock requester's buildout may read: ids
    # as slapfed's own, an address that is one
    if not _is_id(computer) or not _is_id(partition):
        return None
    address = _address(end.get("address"))
    ip_list = [(partition, address)] if address is not None else []
    params = (shared_parameters(inst) if inst.shared else
              _parameters(app, inst, computer, partition, ip_list, []))
    return _software_instance(inst, computer, partition, ip_list, params)


def _is_id(value) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None


def _address(value) -> str | None:
    """``value`` as an IP address's text, or None when it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
