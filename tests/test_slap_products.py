"""SlapOS' product aliases (``master serve --product NAME=URL``, SLAP
``getSoftwareReleaseListFromSoftwareProduct``): the option's checks (a table; the same
rules as a request's release and an id), the command line refusing a bad one before
serving, and the SLAP route over a development-mode app (Flask test client): a product's
release, the releases of the product a release belongs to, [] for none, 400 naming the
field for anything else, and nothing written."""
import pytest
from click.testing import CliRunner

from conftest import last_tid
from slapfed.cli.common import Exit
from slapfed.cli.main import cli
from slapfed.core.errors import InvalidInput
from slapfed.core.products import Products
from slapfed.master.server import ServeOptions, check_options

slap_util = pytest.importorskip("slapos.util")

KVM = "https://releases.invalid/kvm/software.cfg?rev=2"     # '=' in the URL too
HELLO = "/srv/releases/hello/software.cfg"
PRODUCTS = (f"kvm={KVM}", f"hello={HELLO}")


def test_products_map_each_name_to_its_url_in_order():
    products = Products.parse(PRODUCTS)
    assert products.aliases == (("kvm", KVM), ("hello", HELLO))
    assert products.releases_of("kvm") == [KVM] and products.releases_of("nope") == []
    assert products.releases_like(HELLO) == [HELLO] and products.releases_like(KVM + "x") == []
    assert Products.parse([]) == Products() and Products.parse(products) is products


@pytest.mark.parametrize("values, words", [
    (["kvm"], "is not NAME=URL"),
    (["=https://a.invalid/s.cfg"], "name must not be empty"),
    (["k vm=https://a.invalid/s.cfg"], "name"),
    (["-kvm=https://a.invalid/s.cfg"], "name"),
    (["k" * 65 + "=https://a.invalid/s.cfg"], "name"),
    (["kvm=ftp://a.invalid/s.cfg"], "must be an absolute path or an http(s)://"),
    (["kvm=relative/s.cfg"], "must be an absolute path or an http(s)://"),
    (["kvm=https://a.invalid/${x}.cfg"], "'${'"),
    (["kvm=https://a.invalid/s.cfg\n[section]"], "url"),
    (["kvm=https://a.invalid/" + "s" * 2048], "the limit is 2048"),
    ([f"kvm={KVM}", "kvm=https://other.invalid/s.cfg"], "given more than once"),
], ids=["no-equals", "empty-name", "space-in-name", "leading-dash", "long-name",
        "ftp", "relative", "buildout-substitution", "newline", "long-url", "duplicate"])
def test_a_bad_product_is_refused_naming_product(values, words):
    with pytest.raises(InvalidInput) as exc:
        Products.parse(values)
    assert [d["field"] for d in exc.value.details] == ["product"]
    assert words in exc.value.details[0]["problem"]


def test_serve_options_collect_product_problems_with_the_others(tmp_path):
    opts = ServeOptions(data_dir=str(tmp_path), workers=0,
                        products=("kvm", f"hello={HELLO}", "hello=/srv/other.cfg"))
    with pytest.raises(InvalidInput) as exc:
        check_options(opts)
    fields = [d["field"] for d in exc.value.details]
    assert fields == ["workers", "product", "product"]
    check_options(ServeOptions(data_dir=str(tmp_path), products=PRODUCTS))


def test_master_serve_refuses_a_bad_product_before_serving(tmp_path):
    data = tmp_path / "master"
    out = CliRunner().invoke(cli, ["master", "serve", "--data", str(data), "--insecure-http",
                                   "--product", "kvm=ftp://a.invalid/s.cfg"])
    assert out.exit_code == Exit.INVALID, out.output
    assert "product" in out.output and "ftp://" in out.output
    assert not data.exists()                       # refused before anything was made


# -- the SLAP route -----------------------------------------------------------------------
@pytest.fixture
def products_api(master_db):
    from slapfed.master import close_app, create_app
    app = create_app({"INSECURE": True, "DB": master_db, "PRODUCTS": PRODUCTS})
    app.config["TESTING"] = False
    yield app.test_client()
    close_app(app)


ROUTE = "/slap/getSoftwareReleaseListFromSoftwareProduct"


@pytest.mark.parametrize("args, releases", [
    ({"software_product_reference": "kvm"}, [KVM]),
    ({"software_product_reference": "hello"}, [HELLO]),
    ({"software_product_reference": "unknown"}, []),
    ({"software_release_url": KVM}, [KVM]),
    ({"software_release_url": "https://releases.invalid/other.cfg"}, []),
], ids=["kvm", "hello", "unknown-product", "release-of-a-product", "release-of-none"])
def test_the_route_answers_a_marshalled_list(products_api, args, releases):
    resp = products_api.get(ROUTE, query_string=args)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/xml"
    assert slap_util.loads(resp.data) == releases


def test_a_master_without_products_answers_none(api):
    resp = api.get(ROUTE, query_string={"software_product_reference": "kvm"})
    assert resp.status_code == 200 and slap_util.loads(resp.data) == []


@pytest.mark.parametrize("args, fields", [
    ({}, ["software_product_reference", "software_release_url"]),
    ({"software_product_reference": "kvm", "software_release_url": KVM},
     ["software_product_reference", "software_release_url"]),
    ({"software_product_reference": "kvm\r\nX-Evil: 1"}, ["software_product_reference"]),
    ({"software_product_reference": "../../etc/passwd"}, ["software_product_reference"]),
    ({"software_product_reference": ""}, ["software_product_reference"]),
    ({"software_product_reference": "k" * 100_000}, ["software_product_reference"]),
    ({"software_release_url": "https://a.invalid/${x}"}, ["software_release_url"]),
    ({"software_release_url": "gopher://a.invalid/"}, ["software_release_url"]),
    ({"software_release_url": "https://a.invalid/" + "s" * 3000}, ["software_release_url"]),
    ({"software_product_reference": "x" * (2 * 1024 * 1024 + 1)},
     ["software_product_reference"]),
], ids=["neither", "both", "crlf", "path", "empty", "long-name", "substitution", "scheme",
        "long-url", "over-the-field-limit"])
def test_a_bad_lookup_is_400_naming_its_fields_and_writes_nothing(products_api, master_db,
                                                                   args, fields):
    before = last_tid(master_db)
    resp = products_api.get(ROUTE, query_string=args)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.json["error"]
    assert error["code"] == "invalid_input"
    assert [d["field"] for d in error["details"]] == fields
    assert last_tid(master_db) == before
