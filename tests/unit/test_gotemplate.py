"""Go's text/template as docker's --format uses it: the output and the errors Go would give."""

from __future__ import annotations

import pytest

from minirun.cli.gotemplate import Map, TemplateError, compile, go_float, parse_format, show
from minirun.errors import UsageError

DATA = {
    "ID": "abc123",
    "Name": "web",
    "N": 3,
    "Zero": 0,
    "Pi": 3.14159,
    "Empty": "",
    "Nil": None,
    "Yes": True,
    "No": False,
    "List": ["a", "b", "c"],
    "NoList": [],
    "Nums": [3, 1, 2],
    "State": {"Status": "running", "Pid": 42, "Health": {"Status": "healthy"}},
    "Labels": Map({"com.example": "x", "b": "2", "a": "1"}),
    "NoLabels": Map(),
    "Html": "<a&b>",
}


def render(text: str, data: object = DATA) -> str:
    return compile(text).execute(data)


def error_of(text: str, data: object = DATA) -> str:
    with pytest.raises(TemplateError) as info:
        render(text, data)
    return info.value.message


@pytest.mark.parametrize(
    "text, out",
    [
        ("plain text", "plain text"),
        ("", ""),
        ("{{.ID}}", "abc123"),
        ("{{ .ID }}", "abc123"),
        ("{{.State.Status}}", "running"),
        ("{{.State.Health.Status}}", "healthy"),
        ("{{.N}} {{.Pi}} {{.Yes}} {{.No}} {{.Nil}}", "3 3.14159 true false <nil>"),
        ("{{.List}}", "[a b c]"),
        ("{{.Labels}}", "map[a:1 b:2 com.example:x]"),
        ("{{.Labels.a}}", "1"),
        ("{{.Labels.missing}}", "<no value>"),
        ("{{.Labels.missing.deeper}}", "<no value>"),
        ("{{if .Labels.missing}}y{{else}}n{{end}}", "n"),
        ("{{$.ID}}", "abc123"),
        ("{{with .State}}{{.Pid}} {{$.Name}}{{end}}", "42 web"),
        ("{{(.State).Status}}", "running"),
        ("{{(index .List 1)}}", "b"),
    ],
)
def test_fields(text, out):
    assert render(text) == out


def test_dot_is_the_data():
    assert render("{{.}}", "hello") == "hello"
    assert render("{{.}}", [1, 2]) == "[1 2]"


@pytest.mark.parametrize(
    "text, out",
    [
        ("{{$x := .Name}}{{$x}}", "web"),
        ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
        ("{{$s := .State}}{{$s.Status}}", "running"),
        ("{{$x := 1}}{{if .Yes}}{{$x = 5}}{{end}}{{$x}}", "5"),
        ('{{.Name | printf "%s!"}}', "web!"),
        ('{{.Name | printf "%s-%s" .ID}}', "abc123-web"),
        ('{{.List | len | printf "%d items"}}', "3 items"),
        ('{{printf "%d" (len .List)}}', "3"),
        ('{{"x" | upper | printf "<%s>"}}', "<X>"),
    ],
)
def test_variables_and_pipelines(text, out):
    assert render(text) == out


@pytest.mark.parametrize(
    "text, out",
    [
        ("{{if .Yes}}y{{end}}", "y"),
        ("{{if .No}}y{{else}}n{{end}}", "n"),
        ("{{if .No}}1{{else if .Zero}}2{{else if .N}}3{{else}}4{{end}}", "3"),
        ("{{if .No}}1{{else if .Zero}}2{{else}}4{{end}}", "4"),
        ("{{if $x := .N}}{{$x}}{{end}}", "3"),
        ("{{range .List}}[{{.}}]{{end}}", "[a][b][c]"),
        ("{{range $i, $v := .List}}{{$i}}={{$v}} {{end}}", "0=a 1=b 2=c "),
        ("{{range $v := .List}}{{$v}}{{end}}", "abc"),
        ("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;com.example=x;"),
        ("{{range .NoList}}x{{else}}none{{end}}", "none"),
        ("{{range .NoLabels}}x{{else}}none{{end}}", "none"),
        ("{{range .Nil}}x{{end}}", ""),
        ('{{range .List}}{{if eq . "b"}}{{break}}{{end}}{{.}}{{end}}', "a"),
        ('{{range .List}}{{if eq . "b"}}{{continue}}{{end}}{{.}}{{end}}', "ac"),
        ("{{range .List}}{{$.Name}}{{end}}", "webwebweb"),
        ("{{with .State.Health}}{{.Status}}{{end}}", "healthy"),
        ("{{with .Empty}}x{{else}}empty{{end}}", "empty"),
        ("{{with $h := .State.Health}}{{$h.Status}}{{end}}", "healthy"),
    ],
)
def test_control_structures(text, out):
    assert render(text) == out


@pytest.mark.parametrize(
    "value, truth",
    [(False, False), (0, False), (0.0, False), (None, False), ("", False), ([], False), ({}, False)]
    + [(True, True), (1, True), (-1, True), (0.5, True), ("0", True), ([0], True), ({"a": 1}, True)],
)
def test_go_truthiness(value, truth):
    assert render("{{if .}}T{{else}}F{{end}}", value) == ("T" if truth else "F")


@pytest.mark.parametrize(
    "text, out",
    [
        ("a  {{- .N}}", "a3"),
        ("{{.N -}}  \n b", "3b"),
        ("x \n {{- .N -}} \n y", "x3y"),
        ("{{- .N -}}", "3"),
        ("{{-3}}", "-3"),
        ("a {{/* a comment */}}b", "a b"),
        ("a {{- /* trimmed */ -}} b", "ab"),
        ("{{/* multi\nline */}}x", "x"),
    ],
)
def test_trim_markers_and_comments(text, out):
    assert render(text) == out


@pytest.mark.parametrize(
    "text, out",
    [
        ('{{"a\\tb\\n\\"q\\"\\\\"}}', 'a\tb\n"q"\\'),
        ('{{"\\x41\\u00e9\\101"}}', "Aé" + "A"),
        ("{{`raw \\n {{ }}`}}", "raw \\n {{ }}"),
        ('{{"}}"}}', "}}"),
        ("{{0x1F}} {{-7}} {{1_000}} {{017}}", "31 -7 1000 15"),
        ("{{1.5}} {{1e3}} {{.5}}", "1.5 1000 0.5"),
        ("{{true}} {{false}}", "true false"),
        ("{{'a'}}", "97"),
        ("{{print nil}}", "<nil>"),
    ],
)
def test_literals(text, out):
    assert render(text) == out


@pytest.mark.parametrize(
    "value, text",
    [
        (3.0, "3"),
        (0.5, "0.5"),
        (-2.25, "-2.25"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1.5e-7, "1.5e-07"),
        (0.0001, "0.0001"),
        (0.0, "0"),
        (1e21, "1e+21"),
        (float("inf"), "+Inf"),
    ],
)
def test_floats_print_as_go_prints_them(value, text):
    assert go_float(value) == text


@pytest.mark.parametrize(
    "value, text",
    [
        ("s", "s"),
        (None, "<nil>"),
        ([1, "a", None, [2]], "[1 a <nil> [2]]"),
        ({"b": 1, "a": [True]}, "map[a:[true] b:1]"),
        (Map(z=1.0), "map[z:1]"),
    ],
)
def test_show(value, text):
    assert show(value) == text


@pytest.mark.parametrize(
    "text, out",
    [
        ("{{and 1 2}} {{and 1 0 2}} {{and .Empty .Missing}}", "2 0 "),
        ('{{or 0 "" "x" .Missing}} {{or 0 .Empty}}', "x "),
        ("{{.N | and 1}} {{0 | or .Empty}}", "3 0"),
        ("{{not .Yes}} {{not 0}} {{not .List}}", "false true false"),
        ('{{len .List}} {{len .Labels}} {{len "héllo"}}', "3 3 6"),
        ('{{index .List 2}} {{index .Labels "a"}} {{index .State "Health" "Status"}}', "c 1 healthy"),
        ('[{{index .Labels "nope"}}]', "[]"),
        ('{{index "abc" 1}}', "98"),
        ('{{slice .List 1}} {{slice .List 1 2}} {{slice "hello" 1 3}} {{slice .List}}', "[b c] [b] el [a b c]"),
        ('{{eq 1 1}} {{eq "a" "b"}} {{eq .N 1 2 3}} {{eq .Nil .Nil}}', "true false true true"),
        ('{{ne 1 2}} {{ne "a" "a"}}', "true false"),
        ('{{lt 1 2}} {{le 2 2}} {{gt 1.5 2.5}} {{ge "b" "a"}}', "true true false true"),
        ('{{print 1 2 "a" 3 "b" "c"}}', "1 2a3bc"),
        ("{{print .List .N}}", "[a b c] 3"),
        ('{{println 1 "a" 2}}', "1 a 2\n"),
        ('{{html "<a href=\'x\'>&\\""}}', "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"),
        ('{{js "a\'b\\"c<d>&=\\\\"}}', "a\\'b\\\"c\\u003Cd\\u003E\\u0026\\u003D\\\\"),
        ('{{js "\\n"}}', "\\u000A"),
        ('{{urlquery "a b/c?d=é"}}', "a+b%2Fc%3Fd%3D%C3%A9"),
        ("{{html 1 2}}", "1 2"),
    ],
)
def test_builtins(text, out):
    assert render(text) == out


@pytest.mark.parametrize(
    "text, out",
    [
        ('{{split "a,b,c" ","}}', "[a b c]"),
        ('{{split "abc" ""}}', "[a b c]"),
        ('{{len (split "" ",")}}', "1"),
        ('{{join .List ", "}}', "a, b, c"),
        ('{{join (split "x:y" ":") "-"}}', "x-y"),
        ('{{title "hello big-world foo_bar"}}', "Hello Big-World Foo_bar"),
        ('{{title "mIxed"}}', "MIxed"),
        ('{{lower "MiXeD"}} {{upper "MiXeD"}}', "mixed MIXED"),
        ('[{{pad "x" 2 3}}]', "[  x   ]"),
        ('[{{pad "" 2 3}}]', "[]"),
        ("{{truncate .ID 3}} {{truncate .ID 99}} [{{truncate .ID 0}}]", "abc abc123 []"),
        ("{{truncate .ID 2 | upper}}", "AB"),
    ],
)
def test_docker_functions(text, out):
    assert render(text) == out


@pytest.mark.parametrize(
    "fmt, args, out",
    [
        ('"%s|%v|%d"', '"a" .List 42', "a|[a b c]|42"),
        ('"%5s|%-5s|%05d|%-4d|%3d"', '"ab" "ab" 42 7 12345', "   ab|ab   |00042|7   |12345"),
        ('"%05d"', "-42", "-0042"),
        ('"%+d %+.1f"', "5 2.0", "+5 +2.0"),
        ('"%.2f %f %.0f %8.3f"', ".Pi .Pi 2.5 .Pi", "3.14 3.141590 2    3.142"),
        ('"%e %g %g"', "1234.5678 1234.5678 1000000.0", "1.234568e+03 1234.5678 1e+06"),
        ('"%x %X %#x %o %b"', "255 255 255 8 5", "ff FF 0xff 10 101"),
        ('"%x"', '"hi"', "6869"),
        ('"%q"', '"a\\"b\\n"', '"a\\"b\\n"'),
        ('"%t %t"', ".Yes .No", "true false"),
        ('"%c %U"', "65 65", "A U+0041"),
        ('"100%%"', "", "100%"),
        ('"%.3s"', '"abcdef"', "abc"),
        ('"%*d"', "4 7", "   7"),
        ('"%d %s"', "1", "1 %!s(MISSING)"),
        ('"%d"', '"x"', "%!d(string=x)"),
        ('"%s"', "5", "%!s(int=5)"),
        ('"%d"', "1 2", "1%!(EXTRA int=2)"),
        ('"%!"', "", "%!!(MISSING)"),
    ],
)
def test_printf(fmt, args, out):
    assert render("{{printf " + fmt + " " + args + "}}") == out


@pytest.mark.parametrize(
    "text, out",
    [
        ("{{json .State}}", '{"Status":"running","Pid":42,"Health":{"Status":"healthy"}}'),
        ("{{json .Labels}}", '{"a":"1","b":"2","com.example":"x"}'),
        ("{{json .List}} {{json .NoList}} {{json .Nil}}", '["a","b","c"] [] null'),
        ("{{json .Html}}", '"<a&b>"'),
        ('{{json "tab\\tnl\\nq\\"\\u0001\\u2028é"}}', '"tab\\tnl\\nq\\"\\u0001\\u2028é"'),
        (
            "{{json 3.0}} {{json 0.5}} {{json 1e21}} {{json 0.0000001}} {{json 1e20}}",
            "3 0.5 1e+21 1e-7 100000000000000000000",
        ),
        ("{{json .Yes}} {{json .N}} {{json .Labels.missing}}", "true 3 null"),
    ],
)
def test_json(text, out):
    assert render(text) == out


@pytest.mark.parametrize(
    "fmt, result",
    [
        ("{{.ID}}", (False, "{{.ID}}")),
        ("table {{.ID}}\\t{{.Name}}", (True, "{{.ID}}\t{{.Name}}")),
        ("table", (True, "")),
        ("json", (False, "{{json .}}")),
        (" json ", (False, "{{json .}}")),
        ("  {{.ID}}\\n  ", (False, "{{.ID}}\n")),
        ("{{.A}}\\\\t", (False, "{{.A}}\\\t")),
        ("\t{{.ID}}", (False, "\t{{.ID}}")),
    ],
)
def test_parse_format(fmt, result):
    assert parse_format(fmt) == result


@pytest.mark.parametrize(
    "text, message",
    [
        ("{{.ID", "unclosed action"),
        ("a\n{{.ID", "unclosed action"),
        ("{{foo .ID}}", 'function "foo" not defined'),
        ("{{if .Yes}}x", "unexpected EOF"),
        ("{{range .List}}{{.}}", "unexpected EOF"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{}}", "missing value for command"),
        ("{{if}}x{{end}}", "missing value for if"),
        ("{{.A |}}", "missing value for command"),
        ("{{$x}}", 'undefined variable "$x"'),
        ("{{$x = 1}}", 'undefined variable "$x"'),
        ("{{if .Yes}}{{$x := 1}}{{end}}{{$x}}", 'undefined variable "$x"'),
        ('{{"abc}}', "unterminated quoted string"),
        ("{{/* open", "unclosed comment"),
        ("{{(.A}}", "unclosed left paren"),
        ("{{.A)}}", "unexpected right paren"),
        ("{{nil}}", "nil is not a command"),
        ("{{break}}", "{{break}} outside {{range}}"),
        ('{{template "x"}}', "{{template}} is not supported"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(TemplateError) as info:
        compile(text)
    line = text[: text.rindex("{{")].count("\n") + 1  # the line of the last action
    assert info.value.message == f"template parsing error: template: :{line}: {message}"


def test_errors_are_usage_errors_with_exit_125():
    with pytest.raises(UsageError) as info:
        compile("{{.ID")
    assert info.value.exit_code == 125
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    "text, message",
    [
        ("{{.Missing}}", 'template: :1:2: executing "" at <.Missing>: can\'t evaluate field Missing in type struct'),
        (
            "x\n  {{.State.Nope}}",
            'template: :2:4: executing "" at <.State.Nope>: can\'t evaluate field Nope in type struct',
        ),
        ("{{.ID.Len}}", 'template: :1:2: executing "" at <.ID.Len>: can\'t evaluate field Len in type string'),
        ("{{.Nil.X}}", 'template: :1:2: executing "" at <.Nil.X>: nil pointer evaluating interface {}.X'),
        ("{{.ID 1}}", 'template: :1:2: executing "" at <.ID>: can\'t give argument to non-function .ID'),
        (
            "{{index .List 5}}",
            'template: :1:2: executing "" at <index .List 5>: error calling index: index out of range: 5',
        ),
        ('{{index .List "a"}}', "error calling index: cannot index slice/array with type string"),
        ("{{index .N 1}}", "error calling index: can't index item of type int"),
        ("{{slice .List 2 1}}", "error calling slice: index out of range: 1"),
        ("{{len .N}}", "error calling len: len of type int"),
        ("{{len}}", "wrong number of args for len: want 1 got 0"),
        ("{{and}}", "wrong number of args for and: want at least 1 got 0"),
        ("{{eq 1}}", "error calling eq: missing argument for comparison"),
        ('{{eq 1 "1"}}', "error calling eq: incompatible types for comparison"),
        ("{{lt 1 2.5}}", "error calling lt: incompatible types for comparison"),
        ("{{lt true false}}", "error calling lt: invalid type for comparison"),
        ("{{upper 1}}", "wrong type for value; expected string; got int"),
        ("{{.ID | truncate 2}}", "wrong type for value; expected string; got int"),
        ('{{pad "x" "1" 2}}', "wrong type for value; expected int; got string"),
        ('{{range "abc"}}{{end}}', "range can't iterate over abc"),
    ],
)
def test_execution_errors(text, message):
    got = error_of(text)
    assert got.endswith(message)
    assert got.startswith("template: :")


def test_method_and_attribute_fields():
    class Ctx:
        Image = "alpine"

        def ID(self) -> str:
            return "abc"

    assert render("{{.ID}} {{.Image}}", Ctx()) == "abc alpine"
    assert error_of("{{._secret}}", Ctx()).endswith("can't evaluate field _secret in type Ctx")


def test_a_method_with_arguments_is_called_as_go_calls_it():
    class Row(dict):
        def Label(self, key):  # noqa: N802
            return {"a": "1"}.get(key, "")

    from minirun.cli.gotemplate import compile as compile_template

    assert compile_template('{{.Label "a"}}|{{.Label "b"}}|{{"a" | .Label}}').execute(Row(x=1)) == "1||1"
