"""core.marshal, the SLAP protocol's marshal XML: round trips with the stock client's own
codec (slapos.util, from the test extras), and hostile documents refused with one clear
InvalidInput naming the field."""
import pytest

from slapfed.core import marshal
from slapfed.core.errors import InvalidInput
from slapfed.core.marshal import SlapObject

slapos_util = pytest.importorskip("slapos.util")

VALUES = [
    pytest.param(None, id="none"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(0, id="zero"),
    pytest.param(-(10 ** 30), id="long"),
    pytest.param(2.5, id="float"),
    pytest.param("", id="empty-string"),
    pytest.param("a<b & c>d &lt;literal&gt; é ✓", id="escapes-and-unicode"),
    pytest.param([1, "x", None, [2, [3]]], id="nested-list"),
    pytest.param((1, ("lo", "127.0.0.1")), id="tuples"),
    pytest.param({"k": "v", "n": {"deep": [True]}, "": "empty key"}, id="dict"),
    pytest.param({"s": {1, 2}}, id="set"),
]


@pytest.mark.parametrize("value", VALUES)
def test_a_value_the_stock_client_encodes_decodes_to_itself(value):
    assert marshal.loads(slapos_util.dumps(value)) == value


@pytest.mark.parametrize("value", VALUES)
def test_a_value_slapfed_encodes_is_what_the_stock_client_decodes(value):
    assert slapos_util.loads(marshal.dumps(value)) == value


def test_the_client_rebuilds_its_own_objects_from_what_slapfed_encodes():
    release = SlapObject("SoftwareRelease", ("http://sr/software.cfg", "c1"),
                         {"_requested_state": "available"})
    part = SlapObject("ComputerPartition", ("c1", "p1", None),
                      {"_partition_id": "p1", "_requested_state": "started",
                       "_software_release_document": release,
                       "_parameter_dict": {"ip_list": [("p1", "10.0.0.1")]}})
    comp = slapos_util.loads(marshal.dumps(SlapObject(
        "Computer", ("c1",), {"_computer_id": "c1", "_software_release_list": [release],
                              "_computer_partition_list": [part]})))
    got = comp._computer_partition_list[0]
    assert type(got).__name__ == "ComputerPartition"
    assert (got.getId(), got.getState()) == ("p1", "started")
    assert got.getSoftwareRelease().getURI() == "http://sr/software.cfg"
    assert got.getInstanceParameterDict() == {"ip_list": [("p1", "10.0.0.1")]}
    inst = slapos_util.loads(marshal.dumps(SlapObject("SoftwareInstance", (), {"x": "1"})))
    assert type(inst).__name__ == "SoftwareInstance" and inst.x == "1"


def test_only_the_clients_four_classes_can_be_encoded():
    with pytest.raises(ValueError):
        SlapObject("Popen")
    with pytest.raises(TypeError):
        marshal.dumps(object())


def test_a_reference_to_a_complete_list_is_the_same_value():
    doc = ('<marshal><list id="i1"><list id="i2"><int>1</int></list>'
           '<reference id="i2"/></list></marshal>')
    assert marshal.loads(doc) == [[1], [1]]


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{"&lol%s;" % (i - 1 if i > 1 else "") * 10}">'
                            for i in range(1, 10))
                  + ']><marshal><string>&lol9;</string></marshal>')
HOSTILE = [
    pytest.param(BILLION_LAUGHS, "DOCTYPE", id="billion-laughs"),
    pytest.param('<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                 '<marshal><string>&x;</string></marshal>', "DOCTYPE", id="external-entity"),
    pytest.param("<marshal>" + "<list>" * 100 + "</list>" * 100 + "</marshal>", "deeper",
                 id="deep-nesting"),
    pytest.param('<marshal><object id="i1" module="os" class="system"><tuple><string>id'
                 '</string></tuple><dictionary/></object></marshal>', "object",
                 id="object-of-any-class"),
    pytest.param('<marshal><object id="i1" module="slapos.slap.slap" class="Computer">'
                 '<tuple/><dictionary/></object></marshal>', "object", id="even-a-client-class"),
    pytest.param("<marshal><code>YQ==</code></marshal>", "<code>", id="code-element"),
    pytest.param("<marshal><list>" + "<int>1</int>" * 30_000 + "</list></marshal>",
                 "elements", id="too-many-elements"),
    pytest.param("<marshal><string>" + "x" * (2 * 1024 * 1024) + "</string></marshal>",
                 "bytes long", id="huge-document"),
    pytest.param('<marshal><list id="i1"><reference id="i1"/></list></marshal>',
                 "not a complete", id="self-reference"),
    pytest.param("<marshal><int>1</int><int>2</int></marshal>", "exactly one", id="two-values"),
    pytest.param("<marshal><dictionary><string>k</string></dictionary></marshal>", "odd",
                 id="odd-dictionary"),
    pytest.param("<marshal><dictionary><list/><int>1</int></dictionary></marshal>",
                 "key", id="unhashable-key"),
    pytest.param("<marshal><int>" + "9" * 100 + "</int></marshal>", "digits", id="huge-int"),
    pytest.param("<marshal><bool>yes</bool></marshal>", "0 or 1", id="bad-bool"),
    pytest.param("<string>x</string>", "start with <marshal>", id="no-root"),
    pytest.param("<marshal><string>x</marshal>", "well-formed", id="malformed"),
    pytest.param("", "well-formed", id="empty"),
    pytest.param("<marshal><list>text</list></marshal>", "text inside", id="stray-text"),
]


@pytest.mark.parametrize("doc,problem", HOSTILE)
def test_a_hostile_document_is_refused_naming_the_field(doc, problem):
    with pytest.raises(InvalidInput) as info:
        marshal.loads(doc, "filter_xml")
    assert info.value.details[0]["field"] == "filter_xml"
    assert problem in info.value.details[0]["problem"]


def test_the_encoded_bytes_stay_what_they_were():
    """The exact document for keys of two types, nested values, escapes, a set and an
    object: what nodes cache and compare must not drift with the encoder's speed-ups."""
    value = {"b": "x<y", "a": ["1", 2, None, True, ("t", 2.5)], 3: {"z": "", "y": {}},
             "s": {2, 1}, "o": SlapObject("SoftwareInstance", ("r",), {"_x": "&"})}
    assert marshal.dumps(value).decode() == (
        '<marshal><dictionary id="i1"><int>3</int><dictionary id="i2"><string>y</string>'
        '<dictionary id="i3"></dictionary><string>z</string><string></string></dictionary>'
        '<string>a</string><list id="i4"><string>1</string><int>2</int><none/><bool>1</bool>'
        '<tuple><string>t</string><float>2.5</float></tuple></list><string>b</string>'
        '<string>x&amp;lt;y</string><string>o</string><object id="i5" '
        'module="slapos.slap.slap" class="SoftwareInstance"><tuple><string>r</string></tuple>'
        '<dictionary id="i6"><string>_x</string><string>&amp;amp;</string></dictionary>'
        '</object><string>s</string><set id="i7"><int>1</int><int>2</int></set></dictionary>'
        '</marshal>')


def _entry_world(parameters, software_url, requested_state, shared_parameters):
    from types import SimpleNamespace as NS
    root = NS(id="i-root", parent=None, reference="stack & <co>")
    shared = NS(id="i-s<1>", reference="front&", software_type="default",
                parameters=shared_parameters)
    inst = NS(id="i-a&b", parent="i-root", reference="db <1>", software_type="mariadb",
              software_url=software_url, requested_state=requested_state,
              parameters=parameters, shared_ids=("i-s<1>", "i-gone"), created_at=12.5,
              revision=4)
    app = NS(instances={"i-root": root, "i-s<1>": shared, "i-a&b": inst})
    return app, NS(id="node&1"), NS(id="slappart<3>", address="10.0.0.3"), inst


@pytest.mark.parametrize("parameters,url,state,shared", [
    pytest.param({"k": "v"}, "http://sr/software.cfg", "started", {}, id="plain"),
    pytest.param({"a": ["x", {"deep": [1]}], "z": {"n": None}}, "http://sr/s.cfg?a=1&b=<2>",
                 "stopped", {"l": [1, [2]]}, id="nested-values-shift-the-ids"),
    pytest.param({"timestamp": "mine", "ip_list": "mine", "&": "<"}, None, "destroyed",
                 {"x": {"y": "z"}}, id="reserved-keys-no-release"),
])
def test_a_partition_entry_is_the_bytes_of_its_object(parameters, url, state, shared):
    """slap_render.partition_fragment writes its frame itself and encodes a release once
    per computer and id: the bytes stay those of the generic encoder, escapes and ids
    included, and the stock client decodes them to the partition it encodes."""
    from slapfed.services import slap_render
    app, comp, p, inst = _entry_world(parameters, url, state, shared)
    fast = slap_render.partition_fragment(app, comp, p, inst)
    assert fast == marshal.encode_fragment(slap_render.partition_object(app, comp.id, p, inst))
    assert slap_render.partition_fragment(app, comp, p, inst) == fast     # the same again
    decoded = slapos_util.loads(f"<marshal>{fast}</marshal>".encode())
    assert decoded._partition_id == "slappart<3>" and decoded._instance_guid == "i-a&b"
    assert decoded._parameter_dict["slave_instance_list"][0]["slave_title"] == "front&"
    assert decoded._requested_state == state
