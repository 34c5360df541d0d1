"""SLAP under /slap/: the stock slapos.core client against a master app served over real
HTTP on loopback (development mode), the refusals of hostile calls (nothing written),
and SLAP's authorization matrix through the same policy table as /api/v1 (certificates
injected as DER, as tests/test_authz_http.py does)."""
import pytest

from conftest import AUTHZ_URL, AuthzWorld, computer_body, last_tid

slap_lib = pytest.importorskip("slapos.slap")
from slapos.slap import NotFoundError, ResourceNotReady  # noqa: E402
from slapos.util import dumps, loads as slap_loads  # noqa: E402

SR = "http://releases.invalid/hello/software.cfg"
COMPUTER = "comp-1"
TREES_QUERY = 'portal_type:"Instance Tree" AND validation_state:validated'


def layout(cid=COMPUTER, partitions=3, octet=7):
    """What ``slapos node format`` sends: the computer and its partitions' addresses."""
    return {"reference": cid, "address": "127.0.0.1", "netmask": "255.0.0.0",
            "partition_list": [
                {"reference": f"slappart{i}", "tap": {"name": f"slaptap{i}"},
                 "address_list": [{"addr": f"fe80::{i + 1}", "netmask": "ffff::"},
                                  {"addr": f"127.0.{octet}.{i + 1}", "netmask": "255.0.0.0"}]}
                for i in range(partitions)]}


@pytest.fixture
def slap(master_app, serve_app):
    """A stock ``slapos.slap.slap`` connected to a development-mode master over HTTP."""
    url = serve_app(master_app) + "/slap/"
    conn = slap_lib.slap()
    conn.initializeConnection(url)
    conn.registerComputer(COMPUTER).updateConfiguration(dumps(layout()))
    conn.registerSupply().supply(SR, COMPUTER)
    return conn


def partitions(conn, cid=COMPUTER):
    return {p.getId(): p for p in conn.registerComputer(cid).getComputerPartitionList()}


def test_a_stock_client_requests_publishes_reads_and_destroys(slap):
    order = slap.registerOpenOrder()
    asked = order.request(SR, "web-1", partition_parameter_kw={"port": "8080", "n": 3},
                          filter_kw={"computer_guid": COMPUTER})
    pid = asked.getId()
    assert asked.getState() == "started" and asked.getConnectionParameterDict() == {}
    assert asked.getSoftwareRelease().getURI() == SR

    # the node's view: the release to install, the partition with its parameters
    computer = slap.registerComputer(COMPUTER)
    assert [(r.getURI(), r.getState()) for r in computer.getSoftwareReleaseList()] == \
        [(SR, "available")]
    node_part = partitions(slap)[pid]
    params = node_part.getInstanceParameterDict()
    assert params["port"] == "8080" and params["n"] == "3"      # strings, as SlapOS gives
    assert params["slap_computer_partition_id"] == pid
    assert params["instance_title"] == params["root_instance_title"] == "web-1"
    index = int(pid[len("slappart"):])
    assert params["ip_list"] == [(pid, f"127.0.7.{index + 1}")]   # IPv4 first
    assert node_part.getInstanceGuid() == asked.getInstanceGuid()
    free = [p for p in partitions(slap).values() if p.getId() != pid]
    assert {p.getState() for p in free} == {"destroyed"}
    with pytest.raises(NotFoundError):
        free[0].getSoftwareRelease()                           # a free partition: skipped

    # the instance publishes as a node's recipe would; the requester sees it
    node_part.setConnectionDict({"url": "http://127.0.7.1:8080/"})
    node_part.started()
    again = order.request(SR, "web-1", partition_parameter_kw={"port": "8080", "n": 3},
                          filter_kw={"computer_guid": COMPUTER})
    assert again.getId() == pid
    assert again.getConnectionParameterDict() == {"url": "http://127.0.7.1:8080/"}
    assert slap.registerComputerPartition(COMPUTER, pid).getConnectionParameterDict() == \
        {"url": "http://127.0.7.1:8080/"}

    # a child requested by the instance, over the partition variant
    child = node_part.request(SR, "default", "web-1-db")
    assert child.getId() not in (pid,)
    assert partitions(slap)[child.getId()].getInstanceParameterDict()[
        "root_instance_title"] == "web-1"

    # destruction: requested, carried out by the node, and the partition is free
    before = params["timestamp"]
    gone = order.request(SR, "web-1", state="destroyed")
    assert gone.getState() == "destroyed"
    node_part = partitions(slap)[pid]
    assert node_part.getState() == "destroyed"
    assert node_part.getInstanceParameterDict()["timestamp"] != before
    node_part.stopped()
    node_part.destroyed()
    freed = partitions(slap)[pid]
    assert freed.getState() == "destroyed"
    with pytest.raises(ResourceNotReady):
        freed.getInstanceGuid()                                # no instance there any more
    with pytest.raises(NotFoundError):
        freed.getSoftwareRelease()
    node_part.destroyed()        # said again: already true


def test_a_shared_request_waits_408_for_a_host_then_gets_its_own_parameters(slap):
    order = slap.registerOpenOrder()
    waiting = order.request(SR, "site-1", partition_parameter_kw={"domain": "a.example"},
                            shared=True)
    with pytest.raises(ResourceNotReady):
        waiting.getId()                        # 408: the client's placeholder
    host = order.request(SR, "front", filter_kw={"computer_guid": COMPUTER})
    node_host = partitions(slap)[host.getId()]
    slaves = node_host.getInstanceParameterDict()["slave_instance_list"]
    assert [s["slave_title"] for s in slaves] == ["site-1"]
    assert slaves[0]["domain"] == "a.example"
    node_host.setConnectionDict({"url": "https://a.example/"},
                                slave_reference=slaves[0]["slave_reference"])
    site = order.request(SR, "site-1", partition_parameter_kw={"domain": "a.example"},
                         shared=True)
    assert site.getId() == host.getId()        # hosted there
    assert site.getState() == "started"
    assert site.getConnectionParameterDict() == {"url": "https://a.example/"}


def test_slapos_node_bang_redeploys_every_live_instance_of_the_computer(slap, api):
    """computerBang (``slapos node bang``): one new revision for each instance the
    computer hosts, none for a destroyed one; the node sees new timestamps."""
    order = slap.registerOpenOrder()
    for ref in ("b-1", "b-2", "b-gone"):
        order.request(SR, ref, filter_kw={"computer_guid": COMPUTER})
    order.request(SR, "b-gone", state="destroyed")

    def revisions():
        return {i["reference"]: i["revision"]
                for i in api.get("/api/v1/instances?all=1").json["instances"]}
    before = revisions()
    stamps = {p.getId(): p.getInstanceParameterDict().get("timestamp")
              for p in partitions(slap).values() if getattr(p, "_instance_guid", None)}
    slap.registerComputer(COMPUTER).bang("disk replaced")
    after = revisions()
    assert {r: after[r] - before[r] for r in before} == {"b-1": 1, "b-2": 1, "b-gone": 0}
    again = {p.getId(): p.getInstanceParameterDict().get("timestamp")
             for p in partitions(slap).values() if getattr(p, "_instance_guid", None)}
    assert sum(again[k] != stamps[k] for k in stamps) == 2
    with pytest.raises(NotFoundError):          # an unknown computer: 404, nothing written
        slap.registerComputer("no-such-computer").bang("x")


def test_children_a_partition_no_longer_requests_are_destroyed(slap, api):
    """updateComputerPartitionRelatedInstanceList, as slapgrid sends it after a
    deployment: the parent's children not in the list are destroyed (once), the others
    and other trees untouched; a bad list is 400 naming its field and writes nothing."""
    order = slap.registerOpenOrder()
    parent = order.request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    inside = slap.registerComputerPartition(COMPUTER, parent.getId())
    for ref in ("front", "db"):
        inside.request(SR, "default", ref, filter_kw={"computer_guid": COMPUTER})

    def states():
        return {i["reference"]: i["requested_state"]
                for i in api.get("/api/v1/instances?all=1").json["instances"]}
    assert set(states().values()) == {"started"}
    inside.setComputerPartitionRelatedInstanceList(["front", "db"])
    assert set(states().values()) == {"started"}
    inside.setComputerPartitionRelatedInstanceList(["front"])
    assert states() == {"stack": "started", "front": "started", "db": "destroyed"}
    for bad in ({"not": "a list"}, [1, 2], ["x" * 300], ["ok"] * 1001):
        resp = api.post("/slap/updateComputerPartitionRelatedInstanceList", data={
            "computer_id": COMPUTER, "computer_partition_id": parent.getId(),
            "instance_reference_xml": dumps(bad)})
        assert resp.status_code == 400, resp.get_data(as_text=True)
        assert resp.json["error"]["details"][0]["field"] == "instance_reference_xml"
    assert states()["front"] == "started"
    inside.setComputerPartitionRelatedInstanceList([])
    assert states() == {"stack": "started", "front": "destroyed", "db": "destroyed"}


def test_node_reports_of_software_are_recorded(slap, api):
    slap.registerComputer(COMPUTER).getSoftwareReleaseList()[0].building()
    assert api.get(f"/api/v1/computers/{COMPUTER}").json["software"][0]["status"] == \
        "building"
    release = slap.registerComputer(COMPUTER).getSoftwareReleaseList()[0]
    release.error("compiling failed: no cc")
    sw = api.get(f"/api/v1/computers/{COMPUTER}").json["software"][0]
    assert sw["status"] == "failed" and "no cc" in sw["log_tail"]
    release.available()
    assert api.get(f"/api/v1/computers/{COMPUTER}").json["software"][0]["status"] == \
        "installed"


def test_an_unchanged_full_information_read_is_the_cached_document(slap, master_app):
    from slapfed.master import runtime_of
    rt = runtime_of(master_app)
    helper = slap._connection_helper
    first = helper.GET("getFullComputerInformation", params={"computer_id": COMPUTER})
    second = helper.GET("getFullComputerInformation", params={"computer_id": COMPUTER})
    assert first == second
    serial = api_serial = next(iter(rt.slap_renderer._documents.values()))[0]
    assert rt.slap_renderer.cached(COMPUTER, serial) is not None and api_serial == serial


def test_a_large_full_information_travels_gzip_compressed_to_the_stock_client(
        master_app, serve_app):
    """A document past GZIP_MIN_BYTES goes compressed to a client that takes gzip (the
    stock client does), compressed once per serial; the stock client reads the same
    partitions; a client that takes no gzip gets the plain bytes."""
    import http.client
    import zlib
    from urllib.parse import urlsplit
    from slapfed.master import runtime_of
    from slapfed.services.desired import GZIP_MIN_BYTES
    url = serve_app(master_app) + "/slap/"
    conn = slap_lib.slap()
    conn.initializeConnection(url)
    conn.registerComputer("big").updateConfiguration(dumps(layout("big", 60, octet=9)))
    conn.registerSupply().supply(SR, "big")
    conn.registerOpenOrder().request(SR, "i1", filter_kw={"computer_guid": "big"})
    assert len(partitions(conn, "big")) == 60        # through the stock client, decoded

    def raw(encoding):
        where = urlsplit(url)
        http_conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        try:
            http_conn.request("GET", where.path + "getFullComputerInformation?computer_id=big",
                              headers={"Accept-Encoding": encoding})
            answer = http_conn.getresponse()
            return answer.getheader("Content-Encoding"), answer.getheader("Vary"), answer.read()
        finally:
            http_conn.close()
    plain_coding, vary, plain = raw("identity")
    packed_coding, _, packed = raw("gzip, deflate")
    assert (plain_coding, vary, packed_coding) == (None, "Accept-Encoding", "gzip")
    assert len(plain) > GZIP_MIN_BYTES and len(packed) < len(plain) / 5
    assert zlib.decompress(packed, 16 + zlib.MAX_WBITS) == plain
    renderer = runtime_of(master_app).slap_renderer
    kept = renderer._gzipped["big"]
    assert raw("gzip")[2] == packed and renderer._gzipped["big"] is kept   # once per serial
    assert raw("gzip;q=0")[0] is None                 # refused by its quality: plain


# -- hostile calls: a clear error, nothing written ------------------------------------
def form(**fields):
    base = {"software_release": SR, "partition_reference": "r1", "software_type": "default",
            "partition_parameter_xml": dumps({}), "filter_xml": dumps({}),
            "state": dumps(None), "shared_xml": dumps(False)}
    base.update(fields)
    return base


@pytest.fixture
def slap_api(api):
    api.post("/slap/loadComputerConfigurationFromXML", data={"xml": dumps(layout())})
    api.post("/slap/supplySupply", data={"url": SR, "computer_id": COMPUTER})
    return api


LAUGHS = ('<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
          ']><marshal><dictionary><string>k</string><string>&b;</string></dictionary>'
          '</marshal>')
BAD_CALLS = [
    pytest.param(form(filter_xml=LAUGHS), 400, "invalid_input", "filter_xml", id="laughs"),
    pytest.param(form(partition_parameter_xml="<marshal>" + "<list>" * 64 + "</list>" * 64
                      + "</marshal>"), 400, "invalid_input", "partition_parameter_xml",
                 id="deep"),
    pytest.param(form(partition_parameter_xml='<marshal><object module="os" class="system">'
                      '<tuple/><dictionary/></object></marshal>'), 400, "invalid_input",
                 "partition_parameter_xml", id="object"),
    pytest.param(form(filter_xml="<marshal><string>" + "x" * 1_100_000
                      + "</string></marshal>"), 400, "invalid_input", "filter_xml",
                 id="huge-field"),
    pytest.param(form(filter_xml=dumps({"retention_delay": "1"})), 400, "invalid_input",
                 "filter_xml.retention_delay", id="unknown-sla-key"),
    pytest.param(form(partition_parameter_xml=dumps({"recipe": "x"})), 400, "invalid_input",
                 "partition_parameter_xml.recipe", id="reserved-parameter"),
    pytest.param(form(partition_parameter_xml=dumps([1])), 400, "invalid_input",
                 "partition_parameter_xml", id="parameters-not-a-dict"),
    pytest.param(form(state=dumps("running")), 400, "invalid_input", "state", id="bad-state"),
    pytest.param(form(software_release="../../etc/passwd"), 400, "invalid_input",
                 "software_release", id="release-not-a-url"),
    pytest.param({k: v for k, v in form().items() if k != "partition_reference"}, 400,
                 "invalid_input", "partition_reference", id="missing-reference"),
]


@pytest.mark.parametrize("data,status,code,field", BAD_CALLS)
def test_a_hostile_request_is_refused_naming_the_field_and_writes_nothing(
        slap_api, master_db, data, status, code, field):
    before = last_tid(master_db)
    resp = slap_api.post("/slap/requestComputerPartition", data=data)
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.json["error"]
    assert error["code"] == code and error["details"][0]["field"] == field
    assert last_tid(master_db) == before


def test_a_body_over_the_limit_is_refused_before_it_is_read(slap_api, master_db):
    before = last_tid(master_db)
    resp = slap_api.post("/slap/requestComputerPartition",
                         data=form(filter_xml="x" * (5 * 1024 * 1024)))
    assert resp.status_code == 413 and resp.json["error"]["code"] == "payload_too_large"
    assert last_tid(master_db) == before


@pytest.mark.parametrize("headers,status,code", [
    ({"Origin": "https://evil.example"}, 403, "forbidden"),
    ({"Sec-Fetch-Site": "cross-site"}, 403, "forbidden"),
    ({"Content-Type": "application/json"}, 415, "unsupported_media_type"),
    ({"Authorization": "X-SlapPartition computer_id=../x, computer_partition_id=p"}, 400,
     "invalid_input"),
], ids=["web-page", "cross-site-fetch", "json-body", "bad-partition-header"])
def test_calls_a_stock_client_never_makes_are_refused(slap_api, master_db, headers, status,
                                                       code):
    before = last_tid(master_db)
    if headers.get("Content-Type") == "application/json":
        resp = slap_api.post("/slap/supplySupply", data=b'{"url": "x"}', headers=headers)
    else:
        resp = slap_api.post("/slap/requestComputerPartition", data=form(), headers=headers)
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.json["error"]["code"] == code
    assert last_tid(master_db) == before


def test_a_layout_without_addresses_names_the_partition(slap_api, master_db):
    bad = layout()
    bad["partition_list"][1]["address_list"] = [{"addr": "not-an-ip"}]
    before = last_tid(master_db)
    resp = slap_api.post("/slap/loadComputerConfigurationFromXML", data={"xml": dumps(bad)})
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == "xml.partition_list[1].address_list"
    assert last_tid(master_db) == before


def test_unknown_slap_calls_are_404_which_the_stock_client_tolerates(slap_api):
    assert slap_api.post("/slap/revokeComputerCertificate",
                         data={"computer_id": COMPUTER}).status_code == 404
    assert slap_api.get("/slap/getComputerStatus",
                        query_string={"computer_id": COMPUTER}).status_code == 404


BAD_SEARCHES = [
    pytest.param({"query": 'portal_type:"Compute Node"'}, "query", id="other-query"),
    pytest.param({"query": TREES_QUERY + ' AND title:="a" OR title:="b"'}, "query",
                 id="injected-or"),
    pytest.param({"query": TREES_QUERY + ' AND title:="a\\"b"'}, "query", id="escaped-quote"),
    pytest.param({"query": TREES_QUERY + ' AND title:="' + "x" * 300 + '"'}, "query",
                 id="long-title"),
    pytest.param({"query": [TREES_QUERY, TREES_QUERY]}, "query", id="twice"),
    pytest.param({"query": TREES_QUERY, "limit": "0"}, "limit", id="limit-0"),
    pytest.param({"query": TREES_QUERY, "limit": "1001"}, "limit", id="limit-big"),
    pytest.param({"query": TREES_QUERY, "limit": "-1"}, "limit", id="limit-negative"),
]


@pytest.mark.parametrize("args,field", BAD_SEARCHES)
def test_a_hateoas_search_the_stock_client_never_writes_is_refused(slap_api, args, field):
    resp = slap_api.get("/slap/hateoas/search", query_string=args)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.json["error"]["details"][0]["field"] == field


def test_hateoas_search_by_title_and_limit(slap_api):
    for ref in ("a-1", "a-2", "a-3"):
        assert slap_api.post("/slap/requestComputerPartition", data=form(
            partition_reference=ref)).status_code == 200
    def rows(**args):
        resp = slap_api.get("/slap/hateoas/search", query_string=args)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [r["title"] for r in resp.json["_embedded"]["contents"]]
    assert rows(query=TREES_QUERY + ' AND title:="a-2"') == ["a-2"]
    assert len(rows(query=TREES_QUERY, limit="2")) == 2
    assert sorted(rows(query=TREES_QUERY)) == ["a-1", "a-2", "a-3"]
    nodes = 'portal_type:"Compute Node" AND validation_state:validated'
    assert rows(query=nodes) == [COMPUTER]
    assert rows(query=nodes + f' AND reference:="{COMPUTER}"') == [COMPUTER]
    assert rows(query=nodes + ' AND title:="nope"') == []
    root = slap_api.get("/slap/hateoas/").json["_links"]
    assert root["raw_search"]["href"].endswith("/slap/hateoas/search{?query,select_list*,limit}")


def test_service_info_gives_hostile_parameters_back_as_they_were_sent(slap_api):
    """The parameters `slapos service info` reads come in SlapOS' instance XML: CR/LF,
    ${...}, [x], markup and quotes come back through the stock client's xml2dict exactly,
    and nothing of them becomes an element or an attribute."""
    from slapos.util import xml2dict
    hostile = {"crlf": "one\r\ntwo\rthree", "buildout": "${slap-connection:key}",
               "section": "[x]\nrecipe = evil", "markup": "</parameter><parameter id=\"x\">1",
               "quotes": "'\"&<>", "unicode": "é\u2028ü"}
    assert slap_api.post("/slap/requestComputerPartition", data=form(
        partition_reference="hostile", partition_parameter_xml=dumps(hostile))).status_code == 200
    tree = slap_api.get("/slap/hateoas/search", query_string={
        "query": TREES_QUERY + ' AND title:="hostile"'}).json["_embedded"]["contents"][0]
    doc = slap_api.get("/slap/hateoas/traverse", query_string={
        "relative_url": tree["relative_url"], "view": "slaposjs_view"}).json
    text = doc["_embedded"]["_view"]["my_text_content"]["default"]
    assert xml2dict(text) == hostile
    assert text.count("<parameter ") == len(hostile)


# -- who may call what: the same policy table as /api/v1 ----------------------------------
NODE_ONLY = frozenset({"node_x"})
NODE_OR_ADMIN = frozenset({"node_x", "admin"})
NODE_OR_PARTITION = frozenset({"node_x", "partition_a"})
OWNERS = frozenset({"person_a", "person_b", "admin", "peer", "partition_a", "partition_b"})
PARTIES = OWNERS | {"node_x", "node_y"}          # every authenticated party but a replica
AUTHENTICATED = PARTIES | {"replica"}


def _a_part(w):
    p = w.a_root["placement"]
    return p["computer"], p["partition"]


def _hdr(cid, pid):
    return {"Authorization": f"X-SlapPartition computer_id={cid}, computer_partition_id={pid}"}


def _ids(w):
    cid, pid = _a_part(w)
    return {"computer_id": cid, "computer_partition_id": pid}


SLAP_CASES = [
    ("open-order", lambda w: ("POST", "requestComputerPartition", form(
        software_release=AUTHZ_URL, partition_reference="slap-order",
        filter_xml=dumps({"computer_guid": "node-z"})), {}), OWNERS),
    ("partition-request", lambda w: ("POST", "requestComputerPartition", form(
        software_release=AUTHZ_URL, partition_reference="slap-child",
        filter_xml=dumps({"computer_guid": "node-z"}), **_ids(w)), _hdr(*_a_part(w))),
     NODE_OR_PARTITION),
    ("product", lambda w: ("GET", "getSoftwareReleaseListFromSoftwareProduct",
                           {"software_product_reference": "kvm"}, {}), OWNERS),
    ("partition-product", lambda w: ("GET", "getSoftwareReleaseListFromSoftwareProduct",
                                     {"software_release_url": AUTHZ_URL}, _hdr(*_a_part(w))),
     NODE_OR_PARTITION),
    ("supply", lambda w: ("POST", "supplySupply", {"url": "/srv/other.cfg",
                                                   "computer_id": "node-x"}, {}),
     frozenset({"admin"})),
    ("full-information", lambda w: ("GET", "getFullComputerInformation",
                                    {"computer_id": "node-x"}, {}), NODE_OR_ADMIN),
    ("register-partition", lambda w: ("GET", "registerComputerPartition", {
        "computer_reference": "node-x", "computer_partition_reference": _a_part(w)[1]}, {}),
     NODE_OR_ADMIN),
    ("partition-certificate", lambda w: ("GET", "getComputerPartitionCertificate",
                                         _ids(w), {}), NODE_OR_ADMIN),
    ("format", lambda w: ("POST", "loadComputerConfigurationFromXML",
                          {"xml": dumps(layout("node-x", 4))}, {}), NODE_OR_ADMIN),
    ("software-available", lambda w: ("POST", "availableSoftwareRelease",
                                      {"url": AUTHZ_URL, "computer_id": "node-x"}, {}),
     NODE_ONLY),
    ("use-computer", lambda w: ("POST", "useComputer", {"computer_id": "node-x",
                                                        "use_string": "<journal/>"}, {}),
     NODE_ONLY),
    ("started", lambda w: ("POST", "startedComputerPartition", _ids(w), _hdr(*_a_part(w))),
     NODE_OR_PARTITION),
    ("connection", lambda w: ("POST", "setComputerPartitionConnectionXml", {
        **_ids(w), "connection_xml": dumps({"url": "http://a/"}), "slave_reference": "None"},
        _hdr(*_a_part(w))), NODE_OR_PARTITION),
    ("bang", lambda w: ("POST", "softwareInstanceBang", {**_ids(w), "message": "x"},
                        _hdr(*_a_part(w))), NODE_OR_PARTITION),
    ("related-instances", lambda w: ("POST", "updateComputerPartitionRelatedInstanceList",
                                     {**_ids(w), "instance_reference_xml": dumps([])},
                                     _hdr(*_a_part(w))), NODE_OR_PARTITION),
    ("rename", lambda w: ("POST", "softwareInstanceRename", {**_ids(w), "new_name": "a-new"},
                          _hdr(*_a_part(w))), NODE_OR_PARTITION),
    ("computer-bang", lambda w: ("POST", "computerBang", {"computer_id": "node-x",
                                                          "message": "x"}, {}), NODE_ONLY),
    ("hateoas-url", lambda w: ("GET", "getHateoasUrl", {}, {}), AUTHENTICATED),
    ("hateoas-root", lambda w: ("GET", "hateoas/", {}, {}), AUTHENTICATED),
    ("hateoas-search", lambda w: ("GET", "hateoas/search", {"query": TREES_QUERY}, {}),
     PARTIES),
]


@pytest.mark.parametrize("build,allowed", [c[1:] for c in SLAP_CASES],
                         ids=[c[0] for c in SLAP_CASES])
def test_slap_calls_are_authorized_by_the_policy_table(authz_world, build, allowed):
    w = authz_world
    w.ok(w.call("admin", "POST", "/computers", computer_body("node-z", 12)))
    w.ok(w.call("admin", "POST", "/computers/node-z/software", {"url": AUTHZ_URL}))
    method, name, fields, headers = build(w)
    for actor in AuthzWorld.ACTORS:
        der = w.certs[actor]
        environ = {} if der is None else {"slapfed.peer_certificate": der}
        kwargs = {"data": fields} if method == "POST" else {"query_string": fields}
        resp = w.client.open(f"/slap/{name}", method=method, headers=headers,
                             environ_base=environ, **kwargs)
        if actor in allowed:
            assert resp.status_code == 200, (actor, resp.get_data(as_text=True))
        elif actor in AuthzWorld.REFUSED_CERTS:
            assert resp.status_code == 401, (actor, resp.status_code)
            assert resp.json["error"]["code"] == AuthzWorld.REFUSED_CERTS[actor]
        else:
            assert resp.status_code == 403, (actor, resp.status_code,
                                             resp.get_data(as_text=True))


def test_every_slap_route_is_in_the_matrix(authz_world):
    from slapfed.master.auth import SLAP_GUARDS
    adapter = authz_world.app.url_map.bind("localhost")
    covered = {adapter.match(f"/slap/{build(authz_world)[1]}", method=build(authz_world)[0])[0]
               for _id, build, _allowed in SLAP_CASES}
    reports = {"slap.building_software_release", "slap.software_release_error",
               "slap.destroyed_software_release", "slap.stopped_computer_partition",
               "slap.destroyed_computer_partition", "slap.software_instance_error",
               "slap.get_computer_information",
               "slap.hateoas_traverse"}    # same guards as a case above
    assert covered | reports == set(SLAP_GUARDS)


def test_a_node_speaks_for_its_own_partitions_only(authz_world):
    """node-y's certificate naming a partition of node-x is refused, and nothing written."""
    w = authz_world
    before = last_tid(w.db)
    resp = w.client.post("/slap/requestComputerPartition", data=form(
        software_release=AUTHZ_URL, partition_reference="sneaky"), headers=_hdr(*_a_part(w)),
        environ_base={"slapfed.peer_certificate": w.certs["node_y"]})
    assert resp.status_code == 403 and "may not speak for" in resp.json["error"]["message"]
    assert last_tid(w.db) == before


def test_a_partitions_request_is_recorded_as_its_instances_child(authz_world):
    w = authz_world
    resp = w.client.post("/slap/requestComputerPartition", data=form(
        software_release=AUTHZ_URL, partition_reference="slap-kid",
        filter_xml=dumps({"computer_guid": "node-y"})), headers=_hdr(*_a_part(w)),
        environ_base={"slapfed.peer_certificate": w.certs["node_x"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    answer = slap_loads(resp.get_data())
    assert answer.slap_computer_id == "node-y" and answer._instance_guid
    kids = w.call("admin", "GET", f"/instances?requester={w.a_root['id']}").json["instances"]
    assert ("slap-kid", w.a_root["id"]) in [(k["reference"], k["parent"]) for k in kids]


def test_a_node_gets_its_partitions_key_and_certificate_from_the_ca(authz_world):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from slapfed.ca import identity as ids
    w = authz_world
    cid, pid = _a_part(w)
    resp = w.client.get("/slap/getComputerPartitionCertificate",
                        query_string={"computer_id": cid, "computer_partition_id": pid},
                        environ_base={"slapfed.peer_certificate": w.certs["node_x"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    pair = slap_loads(resp.get_data())
    cert = x509.load_pem_x509_certificate(pair["certificate"].encode())
    key = serialization.load_pem_private_key(pair["key"].encode(), password=None)
    assert ids.identity_of(cert) == ids.partition(cid, pid)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert w.ca.verify(cert.public_bytes(serialization.Encoding.DER)) == \
        ids.partition(cid, pid)


def test_a_node_asking_again_gets_the_same_pair_and_the_ca_issues_no_more(authz_world):
    w = authz_world
    cid, pid = _a_part(w)
    before = len(w.ca.list())

    def ask():
        resp = w.client.get("/slap/getComputerPartitionCertificate",
                            query_string={"computer_id": cid, "computer_partition_id": pid},
                            environ_base={"slapfed.peer_certificate": w.certs["node_x"]})
        assert resp.status_code == 200
        return slap_loads(resp.get_data())
    assert ask() == ask() == ask()
    assert len(w.ca.list()) == before + 1


def test_a_started_report_said_again_writes_nothing(slap, master_db):
    asked = slap.registerOpenOrder().request(SR, "quiet", filter_kw={"computer_guid": COMPUTER})
    part = partitions(slap)[asked.getId()]
    part.started()
    before = last_tid(master_db)
    part.started()                    # a stock node, on each of its runs
    assert last_tid(master_db) == before


def test_a_request_without_a_state_keeps_the_requested_one(slap):
    order = slap.registerOpenOrder()
    order.request(SR, "paused", filter_kw={"computer_guid": COMPUTER}, state="stopped")
    assert order.request(SR, "paused", filter_kw={"computer_guid": COMPUTER}).getState() == \
        "stopped"


def test_a_delegated_instance_is_answered_from_the_end_of_its_chain():
    """Pure: request_answer of a delegated instance waits (None, so 408) until the chain
    the peers reported ends at a computer and a partition given as strings; then those,
    the far address and the relayed connection parameters. What a peer sent is data."""
    from types import SimpleNamespace as NS

    from slapfed.core import marshal as slap_marshal
    from slapfed.services.slap_render import request_answer
    inst = NS(id="i-1", reference="far", parent=None, delegated=True, partition_id=None,
              shared=False, requested_state="started", parameters={"k": "v"},
              connection={"url": "http://x/<b>"}, software_url="http://sr/software.cfg",
              software_type="default", created_at=1.0, revision=2)
    fwd = NS(chain=())
    app = NS(forwards={"i-1": fwd}, instances={"i-1": inst})
    assert request_answer(app, inst) is None
    for end in ({"master": "b"}, {"computer": "c-node"}, {"computer": 7, "partition": "p"},
                {"computer": "c-node", "partition": ["p"]},
                {"computer": "c-node\n[buildout]", "partition": "p"},
                {"computer": "c-node", "partition": "${slap-connection:key-file}"},
                {"computer": "", "partition": "p"}, {"computer": "c" * 65, "partition": "p"}):
        fwd.chain = ({"master": "b"}, end)
        assert request_answer(app, inst) is None, end
    fwd.chain = ({"master": "b"}, {"computer": "c-node", "partition": "slappart1",
                                   "address": "10.0.0.7", "continent": "asia"})
    answer = request_answer(app, inst)
    attrs = answer.attributes
    assert attrs["slap_computer_id"] == "c-node"
    assert attrs["slap_computer_partition_id"] == "slappart1"
    assert attrs["ip_list"] == [("slappart1", "10.0.0.7")]
    assert attrs["_connection_dict"] == {"url": "http://x/<b>"}
    assert attrs["_parameter_dict"]["slap_computer_partition_id"] == "slappart1"
    assert b"http://x/<b>" not in slap_marshal.dumps(answer)     # text, escaped
    for address in ({"not": "an address"}, "10.0.0.7\n[x]", "not-an-ip", "1" * 100):
        fwd.chain = ({"master": "b"}, {"computer": "c-node", "partition": "slappart1",
                                       "address": address})
        assert request_answer(app, inst).attributes["ip_list"] == [], address
    fwd.chain = ({"master": "b"}, {"computer": "c-node", "partition": "slappart1",
                                   "address": "2001:db8::7"})
    assert request_answer(app, inst).attributes["ip_list"] == [("slappart1", "2001:db8::7")]


def test_a_delegated_shared_instance_is_answered_at_its_far_hosts_partition():
    """Pure: a shared instance a peer serves waits (408) until the chain ends at its far
    host's computer and partition; then its own parameters and the connection its far
    host published for it. The chain takes from the peer's host_placement only strings."""
    from types import SimpleNamespace as NS

    from slapfed.services.federation.forwards import _chain_of
    from slapfed.services.slap_render import request_answer
    inst = NS(id="i-s", reference="front", parent=None, delegated=True, partition_id=None,
              host_id=None, shared=True, requested_state="started",
              parameters={"domain": "a.example"}, connection={"url": "https://a.example"},
              software_url="http://sr/software.cfg", software_type="default",
              created_at=1.0, revision=3)
    fwd = NS(chain=_chain_of("b", {"host_instance": "i-far"}))
    app = NS(forwards={"i-s": fwd}, instances={"i-s": inst})
    assert fwd.chain == ({"master": "b"}, {"host_instance": "i-far"})
    assert request_answer(app, inst) is None
    fwd.chain = _chain_of("b", {"host_instance": "i-far", "host_placement": {
        "computer": "c-node", "partition": ["slappart2"], "address": "10.0.0.9"}})
    assert request_answer(app, inst) is None            # a partition that is not text
    fwd.chain = _chain_of("b", {"host_instance": "i-far", "host_placement": {
        "computer": "c-node", "partition": "slappart2", "address": "10.0.0.9",
        "extra": "${x}"}})
    assert fwd.chain[-1] == {"host_instance": "i-far", "computer": "c-node",
                             "partition": "slappart2", "address": "10.0.0.9"}
    attrs = request_answer(app, inst).attributes
    assert (attrs["slap_computer_id"], attrs["slap_computer_partition_id"]) == (
        "c-node", "slappart2")
    assert attrs["_connection_dict"] == {"url": "https://a.example"}
    params = attrs["_parameter_dict"]
    assert params["domain"] == "a.example" and params["instance_title"] == "front"
    assert "slave_instance_list" not in params       # a shared instance's own answer


def test_a_hateoas_traverse_shows_only_what_the_caller_may_read(authz_world):
    """person_a reads its own tree, person_b gets 404 with the same words as for an id
    not in use; a node reads its own computer, not another; a bad key or view is 400
    naming its field."""
    w = authz_world

    def traverse(actor, key, view="slaposjs_view"):
        return w.client.get("/slap/hateoas/traverse",
                            query_string={"relative_url": key, "view": view},
                            environ_base={"slapfed.peer_certificate": w.certs[actor]})
    tree = f"instance_tree/{w.a_root['id']}"
    mine = traverse("person_a", tree)
    assert mine.status_code == 200
    fields = mine.json["_embedded"]["_view"]
    assert fields["my_title"]["default"] == w.a_root["reference"]
    assert mine.json["_links"]["type"]["name"] == "Instance Tree"
    theirs, unknown = traverse("person_b", tree), traverse("person_b", "instance_tree/i-0")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json["error"]["message"].replace(w.a_root["id"], "X") == \
        unknown.json["error"]["message"].replace("i-0", "X")
    assert traverse("node_x", "compute_node/node-x").status_code == 200
    assert traverse("node_x", "compute_node/node-y").status_code == 404
    for key, view, field in (("instance_tree/../x", "slaposjs_view", "relative_url"),
                             ("person/alice", "slaposjs_view", "relative_url"),
                             (tree, "other_view", "view")):
        bad = traverse("person_a", key, view)
        assert bad.status_code == 400 and bad.json["error"]["details"][0]["field"] == field
