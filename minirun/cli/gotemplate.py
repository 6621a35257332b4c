"""The subset of Go's text/template that docker's `--format` flag uses, with docker's functions.

The job: `--format '{{.ID}}\t{{json .Config}}'` renders as docker renders it. A template is lexed
into text and action tokens, parsed into nodes, then executed against plain Python data.

Sources, as facts carried over (no code copied): Go's text/template documentation (actions, trim
markers, pipelines, variables, builtins, truthiness, printing of values, error texts), Go's fmt
documentation (printf verbs and %v of floats), and docker cli's templates/templates.go (json,
split, join, title, lower, upper, pad, truncate) and formatter.go (preFormat: table and json).

Data model: a plain dict acts as a Go struct (a missing key is an execution error), a `Map` as a Go
map (a missing key gives no value); lists are slices; None is nil. Not supported: define,
template, block, method calls with arguments, complex numbers.
"""

from __future__ import annotations

import re

from minirun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class TemplateError(UsageError):
    """A template that does not parse, or that fails while it runs: one line, exit 125."""


class Map(dict[object, object]):
    """A Go map: a missing key gives no value instead of an error."""


class _NoValue:
    """What a missing map key evaluates to: prints `<no value>`, is false."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()

# ---------------------------------------------------------------------------------------------
# Lexer: the source becomes ("text", str) and ("action", [tokens], pos) items.

_SPACE = " \t\r\n"
_TOKEN = re.compile(
    r"""(?P<raw>`[^`]*`)
    |(?P<str>"(?:[^"\\\n]|\\.)*")
    |(?P<char>'(?:[^'\\\n]|\\.)+')
    |(?P<num>[+-]?(?:0[xX][0-9a-fA-F_]+|0[oObB][0-9_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
    |(?P<field>(?:\.[A-Za-z_]\w*)+|\.)
    |(?P<var>\$\w*(?:\.[A-Za-z_]\w*)*)
    |(?P<ident>[A-Za-z_]\w*)
    |(?P<op>:=|[=|(),])""",
    re.VERBOSE,
)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


class Token:
    __slots__ = ("kind", "value", "pos", "end", "spaced")

    def __init__(self, kind: str, value: object, pos: int, end: int, spaced: bool) -> None:
        self.kind, self.value, self.pos, self.end, self.spaced = kind, value, pos, end, spaced


def _unquote(body: str) -> str:
    """The text of a Go interpreted string literal, without its quotes."""
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            out.append(chr(int(body[i + 2 : i + 2 + n], 16)))
            i += 2 + n
        elif e in "01234567":
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise ValueError(f"unknown escape sequence: \\{e}")
    return "".join(out)


def _number(text: str) -> int | float:
    t = text.replace("_", "")
    sign, digits = (t[0], t[1:]) if t[0] in "+-" else ("", t)
    if re.fullmatch(r"0[0-7]+", digits):
        return int(sign + digits, 8)
    try:
        return int(sign + digits, 0)
    except ValueError:
        return float(t)


def _line(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


def _parse_error(src: str, pos: int, message: str) -> TemplateError:
    return TemplateError(f"template parsing error: template: :{_line(src, pos)}: {message}")


def _lex(src: str) -> list[tuple[str, object, int]]:
    """Split the source into text items and action items (an action's tokens and position)."""
    items: list[tuple[str, object, int]] = []
    pos, trim_next = 0, False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        if start < 0:
            if text:
                items.append(("text", text, pos))
            return items
        p = start + 2
        if src.startswith("-", p) and src[p + 1 : p + 2] in tuple(_SPACE):
            text, p = text.rstrip(_SPACE), p + 1
        if text:
            items.append(("text", text, pos))
        tokens, pos, trim_next = _lex_action(src, start, p)
        if tokens is not None:
            items.append(("action", tokens, start))


def _action_end(src: str, p: int) -> tuple[int, bool] | None:
    """Where the action closes at p (after `}}`) and whether it trims, or None."""
    if src.startswith("}}", p):
        return p + 2, False
    if src.startswith("-}}", p) and p > 0 and src[p - 1] in _SPACE:
        return p + 3, True
    return None


def _lex_action(src: str, start: int, p: int) -> tuple[list[Token] | None, int, bool]:
    q = p
    while q < len(src) and src[q] in _SPACE:
        q += 1
    if src.startswith("/*", q):  # a comment: nothing but the comment fits in the action
        close = src.find("*/", q + 2)
        if close < 0:
            raise _parse_error(src, start, "unclosed comment")
        q = close + 2
        while q < len(src) and src[q] in _SPACE:
            q += 1
        end = _action_end(src, q)
        if end is None:
            raise _parse_error(src, start, "comment ends before closing delimiter")
        return None, end[0], end[1]
    tokens: list[Token] = []
    while True:
        spaced = p < len(src) and src[p] in _SPACE
        while p < len(src) and src[p] in _SPACE:
            p += 1
        if p >= len(src):
            raise _parse_error(src, start, "unclosed action")
        end = _action_end(src, p)
        if end is not None:
            return tokens, end[0], end[1]
        m = _TOKEN.match(src, p)
        if m is None:
            if src[p] in "\"'`":
                raise _parse_error(src, p, "unterminated quoted string")
            raise _parse_error(src, p, f"unexpected {src[p]!r} in command")
        kind, text = m.lastgroup or "", m.group()
        value: object = text
        if kind == "str":
            try:
                value = _unquote(text[1:-1])
            except (ValueError, IndexError):
                raise _parse_error(src, p, f"bad quoted string {text}") from None
        elif kind == "raw":
            kind, value = "str", text[1:-1]
        elif kind == "char":
            body = _unquote(text[1:-1]) if "\\" in text else text[1:-1]
            if len(body) != 1:
                raise _parse_error(src, p, f"malformed character constant: {text}")
            kind, value = "num", ord(body)
        elif kind == "num":
            try:
                value = _number(text)
            except ValueError:
                raise _parse_error(src, p, f"bad number syntax: {text!r}") from None
        elif kind == "ident" and text in ("true", "false"):
            kind, value = "bool", text == "true"
        elif kind == "ident" and text == "nil":
            kind, value = "nil", None
        tokens.append(Token(kind, value, p, m.end(), spaced))
        p = m.end()


# ---------------------------------------------------------------------------------------------
# Parser: nodes of the tree.


class Node:
    """Where an operand or command sits in the source: errors point at it."""

    pos = 0
    end = 0


class Field(Node):
    def __init__(self, names: list[str]) -> None:
        self.names = names  # [] is dot itself


class Variable(Node):
    def __init__(self, name: str, names: list[str]) -> None:
        self.name, self.names = name, names


class Chain(Node):
    def __init__(self, node: Node, names: list[str]) -> None:
        self.node, self.names = node, names


class Ident(Node):
    def __init__(self, name: str) -> None:
        self.name = name


class Literal(Node):
    def __init__(self, value: object) -> None:
        self.value = value


class Command(Node):
    def __init__(self, args: list[Node]) -> None:
        self.args = args


class Pipe(Node):
    def __init__(self, decls: list[str], assign: bool, cmds: list[Command]) -> None:
        self.decls, self.assign, self.cmds = decls, assign, cmds


class Text:
    def __init__(self, text: str) -> None:
        self.text = text


class Action:
    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe


class Branch:
    """if, with or range: the pipeline, the body, and what runs otherwise."""

    def __init__(self, kind: str, pipe: Pipe, body: list[object], otherwise: list[object]) -> None:
        self.kind, self.pipe, self.body, self.otherwise = kind, pipe, body, otherwise


class LoopControl:
    def __init__(self, word: str) -> None:
        self.word = word


_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}


def _at(node: Node, pos: int, end: int) -> Node:
    node.pos, node.end = pos, end
    return node


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.items = _lex(src)
        self.i = 0
        self.vars = ["$"]
        self.loops = 0
        self.toks: list[Token] = []
        self.k = 0
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> TemplateError:
        return _parse_error(self.src, self.pos if pos is None else pos, message)

    def parse_list(self, stops: tuple[str, ...]) -> tuple[list[object], str, list[Token]]:
        nodes: list[object] = []
        while self.i < len(self.items):
            kind, payload, self.pos = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(Text(str(payload)))
                continue
            tokens: list[Token] = payload  # type: ignore[assignment]
            if not tokens:
                raise self.error("missing value for command")
            head = tokens[0]
            word = str(head.value) if head.kind == "ident" and head.value in _KEYWORDS else ""
            if word in ("end", "else"):
                if word not in stops:
                    raise self.error(f"unexpected {{{{{word}}}}}")
                if word == "end" and len(tokens) > 1:
                    raise self.error("unexpected operand in end")
                return nodes, word, tokens
            if word in ("if", "with", "range"):
                nodes.append(self.branch(word, tokens))
            elif word in ("break", "continue"):
                if not self.loops:
                    raise self.error(f"{{{{{word}}}}} outside {{{{range}}}}")
                if len(tokens) > 1:
                    raise self.error(f"unexpected operand in {word}")
                nodes.append(LoopControl(word))
            elif word:
                raise self.error(f"{{{{{word}}}}} is not supported")
            else:
                nodes.append(Action(self.pipeline(tokens, 0, "command")))
        if stops:
            raise self.error("unexpected EOF", len(self.src))
        return nodes, "", []

    def branch(self, word: str, tokens: list[Token]) -> Branch:
        mark = len(self.vars)
        pipe = self.pipeline(tokens, 1, word)
        self.loops += word == "range"
        body, stop, stop_tokens = self.parse_list(("else", "end"))
        self.loops -= word == "range"
        otherwise: list[object] = []
        if stop == "else" and len(stop_tokens) > 1:  # else if / else with: shares the end
            nxt = stop_tokens[1]
            if nxt.kind != "ident" or nxt.value not in ("if", "with"):
                raise self.error("unexpected operand in else")
            otherwise = [self.branch(str(nxt.value), stop_tokens[1:])]
        elif stop == "else":
            otherwise, _, _ = self.parse_list(("end",))
        del self.vars[mark:]
        return Branch(word, pipe, body, otherwise)

    def pipeline(self, tokens: list[Token], start: int, context: str) -> Pipe:
        toks = self.toks = tokens[start:]
        self.k = 0
        decls: list[str] = []
        assign = False

        def is_op(i: int, *ops: str) -> bool:
            return i < len(toks) and toks[i].kind == "op" and toks[i].value in ops

        def plain_var(i: int) -> bool:
            return i < len(toks) and toks[i].kind == "var" and "." not in str(toks[i].value)

        if plain_var(0) and is_op(1, ":=", "="):
            decls, assign, self.k = [str(toks[0].value)], toks[1].value == "=", 2
        elif context == "range" and plain_var(0) and is_op(1, ",") and plain_var(2) and is_op(3, ":=", "="):
            decls, assign, self.k = [str(toks[0].value), str(toks[2].value)], toks[3].value == "=", 4
        if assign:
            for name in decls:
                if name not in self.vars:
                    raise self.error(f'undefined variable "{name}"')
        if self.k >= len(toks):
            raise self.error(f"missing value for {context}")
        cmds = self.commands(closing=False)
        if not assign:
            self.vars.extend(decls)
        pipe = Pipe(decls, assign, cmds)
        pipe.pos, pipe.end = toks[0].pos, toks[-1].end
        return pipe

    def commands(self, closing: bool) -> list[Command]:
        cmds: list[Command] = []
        while True:
            args: list[Node] = []
            while self.k < len(self.toks) and not (
                self.toks[self.k].kind == "op" and self.toks[self.k].value in ("|", ")")
            ):
                args.append(self.operand())
            if not args:
                raise self.error("missing value for command")
            if isinstance(args[0], Literal) and args[0].value is None and len(args) == 1:
                raise self.error("nil is not a command")
            cmd = Command(args)
            cmd.pos, cmd.end = args[0].pos, args[-1].end
            cmds.append(cmd)
            if self.k >= len(self.toks):
                if closing:
                    raise self.error("unclosed left paren")
                return cmds
            op = self.toks[self.k]
            self.k += 1
            if op.value == ")":
                if not closing:
                    raise self.error("unexpected right paren")
                return cmds

    def operand(self) -> Node:
        t = self.toks[self.k]
        self.k += 1
        text = str(t.value)
        node: Node
        if t.kind == "field":
            node = Field([] if text == "." else text[1:].split("."))
        elif t.kind == "var":
            name, *names = text.split(".")
            if name not in self.vars:
                raise self.error(f'undefined variable "{name}"')
            node = Variable(name, names)
        elif t.kind == "ident":
            if text in _KEYWORDS:
                raise self.error(f"unexpected <{text}> in command")
            if text not in FUNCS:
                raise self.error(f'function "{text}" not defined')
            node = Ident(text)
        elif t.kind in ("str", "num", "bool", "nil"):
            node = Literal(t.value)
        elif t.kind == "op" and t.value == "(":
            pipe = Pipe([], False, self.commands(closing=True))
            node = pipe
        else:
            raise self.error(f"unexpected {text!r} in operand")
        node.pos, node.end = t.pos, self.toks[self.k - 1].end
        while self.k < len(self.toks) and isinstance(node, Pipe | Chain):
            nxt = self.toks[self.k]
            if nxt.kind != "field" or nxt.spaced or nxt.value == ".":
                break
            self.k += 1
            node = Chain(node, str(nxt.value)[1:].split("."))
            node.pos, node.end = t.pos, nxt.end
        return node


class Template:
    """A parsed template; `execute` renders it against one value."""

    def __init__(self, src: str, nodes: list[object]) -> None:
        self.src, self.nodes = src, nodes

    def execute(self, data: object) -> str:
        out: list[str] = []
        _Exec(self.src, data, out).run(self.nodes, data)
        return "".join(out)


def compile(text: str) -> Template:  # noqa: A001 - the name the callers use
    """Parse `text`; a TemplateError says what is wrong and on which line."""
    nodes, _, _ = _Parser(text).parse_list(())
    return Template(text, nodes)


def parse_format(fmt: str) -> tuple[bool, str]:
    """docker's preFormat: (table mode?, the template text to compile)."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table") :]
    elif fmt.strip() == "json":
        fmt = "{{json .}}"
    fmt = fmt.strip(" ")
    return table, fmt.replace("\\t", "\t").replace("\\n", "\n")


# ---------------------------------------------------------------------------------------------
# Values: Go's truthiness and Go's printing of them.


def truth(v: object) -> bool:
    """Go's truth: false, 0, nil, and empty strings, lists and maps are false."""
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, bool | int | float):
        return bool(v)
    if isinstance(v, str | list | tuple | dict):
        return len(v) > 0
    return True


def _digits(f: float) -> tuple[str, int]:
    """The shortest decimal digits of abs(f) and the decimal exponent of the first one."""
    mant, _, e = repr(abs(f)).partition("e")
    whole, _, frac = mant.partition(".")
    allds = whole + frac
    stripped = allds.lstrip("0")
    if not stripped.strip("0"):
        return "0", 0
    point = len(whole) + (int(e) if e else 0) - (len(allds) - len(stripped))
    return stripped.rstrip("0"), point - 1


def _float_text(f: float, low: int, high: int, exp_digits: int) -> str:
    """Shortest form: positional unless the exponent is < low or >= high, then d.ddde±XX."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    ds, exp = _digits(f)
    sign = "-" if str(f).startswith("-") else ""
    if ds != "0" and (exp < low or exp >= high):
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):0{exp_digits}d}"
    point = exp + 1
    if point <= 0:
        return f"{sign}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return sign + ds + "0" * (point - len(ds))
    return f"{sign}{ds[:point]}.{ds[point:]}"


def go_float(f: float) -> str:
    """A float as Go's %v prints it: 3, 0.5, 1e+06, 1.5e-07."""
    return _float_text(f, -4, 6, 2)


def _sorted_keys(d: dict[object, object]) -> list[object]:
    try:
        return sorted(d)  # type: ignore[type-var]
    except TypeError:
        return sorted(d, key=str)


def show(v: object) -> str:
    """A value as {{.}} and %v print it."""
    if isinstance(v, str):
        return v
    if v is NO_VALUE:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, list | tuple):
        return "[" + " ".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{show(k)}:{show(v[k])}" for k in _sorted_keys(v)) + "]"
    return str(v)


_QUOTE_ESC = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_QUOTE_ESC.update({"\t": "\\t", "\v": "\\v"})


def go_quote(s: str) -> str:
    """Go's strconv.Quote: a double-quoted string with Go escapes."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c in _QUOTE_ESC:
            out.append(_QUOTE_ESC[c])
        elif c.isprintable():
            out.append(c)
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def gotype(v: object) -> str:
    """The Go type docker would report for a value, for error texts and %!verb(...)."""
    if v is None or v is NO_VALUE:
        return "<nil>"
    names = {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}"}
    if isinstance(v, dict):
        return "map[string]interface {}"
    return names.get(type(v), type(v).__name__)


# ---------------------------------------------------------------------------------------------
# printf: Go's fmt verbs, flags, width and precision.

_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d*|\*))?(.?)", re.S)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _verb(verb: str, a: object, flags: str, prec: int | None) -> str | None:
    """One argument under one verb, before padding; None for a verb that does not fit."""
    plus = "+" if "+" in flags and _is_num(a) and a >= 0 else ""  # type: ignore[operator]
    if verb == "v":
        return plus + show(a)
    if verb == "s" and not isinstance(a, bool | int | float):
        text = show(a)
        return text if prec is None else text[:prec]
    if verb == "q" and isinstance(a, str):
        return go_quote(a)
    if verb == "t" and isinstance(a, bool):
        return "true" if a else "false"
    if verb in "fFeEgG" and _is_num(a):
        f = float(a)  # type: ignore[arg-type]
        if verb in "gG" and prec is None:
            text = go_float(f)
        else:
            text = format(f, f".{6 if prec is None else prec}{verb}")
        return plus + (text.upper() if verb == "G" else text)
    if not isinstance(a, int) or isinstance(a, bool):
        if verb in "xX" and isinstance(a, str):
            text = a.encode().hex()
            return text.upper() if verb == "X" else text
        return None
    if verb == "d":
        return plus + str(a)
    if verb in "xXob":
        text = format(a, verb)
        if "#" in flags and verb in "xX":
            text = ("-" if a < 0 else "") + "0" + verb + text.lstrip("-")
        return plus + text
    if verb == "c":
        return chr(a)
    if verb == "q":
        return "'" + go_quote(chr(a))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"
    if verb == "U":
        return f"U+{a:04X}"
    return None


def sprintf(fmt: str, args: list[object]) -> str:
    """Go's fmt.Sprintf over template values, with Go's %!verb(...) for misfits."""
    out: list[str] = []
    pos, i = 0, 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width_s, prec_s, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if not verb:
            out.append("%!(NOVERB)")
            continue
        sizes: list[int | None] = []
        for spec in (width_s, prec_s):
            if spec == "*":
                star = args[i] if i < len(args) else None
                i += 1
                sizes.append(star if isinstance(star, int) and not isinstance(star, bool) else None)
            else:
                sizes.append(int(spec) if spec else (0 if spec == "" else None))
        width, prec = sizes
        if i >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[i]
        i += 1
        text = _verb(verb, a, flags, prec)
        if text is None:
            text = f"%!{verb}({gotype(a)}={show(a)})"
        elif width and len(text) < width:
            if "-" in flags:
                text = text.ljust(width)
            elif "0" in flags and _is_num(a) and verb not in "sqtc":
                sign = text[0] if text[0] in "+-" else ""
                text = sign + text[len(sign) :].rjust(width - len(sign), "0")
            else:
                text = text.rjust(width)
        out.append(text)
    out.append(fmt[pos:])
    if i < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{gotype(a)}={show(a)}" for a in args[i:]) + ")")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Functions: Go's builtins and docker's.


class _FuncError(Exception):
    """A function failed: reported as `error calling <name>: <message>`."""


class _ArgError(_FuncError):
    """An argument of the wrong type: reported as is."""


def _want(kind: type | tuple[type, ...], v: object, what: str) -> None:
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise _ArgError(f"wrong type for value; expected {what}; got {gotype(v)}")


def _len(a: object) -> int:
    if isinstance(a, str):
        return len(a.encode())
    if isinstance(a, list | tuple | dict):
        return len(a)
    raise _FuncError(f"len of type {gotype(a)}")


def _index(a: object, *keys: object) -> object:
    for k in keys:
        if isinstance(a, dict):
            a = a.get(k, "")  # a missing key gives the zero value: docker's maps hold strings
        elif isinstance(a, str | list | tuple):
            if not isinstance(k, int) or isinstance(k, bool):
                raise _FuncError(f"cannot index slice/array with type {gotype(k)}")
            if not 0 <= k < len(a):
                raise _FuncError(f"index out of range: {k}")
            a = a.encode()[k] if isinstance(a, str) else a[k]
        elif a is None or a is NO_VALUE:
            raise _FuncError("index of untyped nil")
        else:
            raise _FuncError(f"can't index item of type {gotype(a)}")
    return a


def _slice(a: object, *idx: object) -> object:
    if not isinstance(a, str | list | tuple):
        raise _FuncError(f"can't slice item of type {gotype(a)}")
    if len(idx) > 2:
        raise _FuncError("too many slice indexes")
    for k in idx:
        _want(int, k, "int")
    bounds = [int(k) for k in idx]  # type: ignore[call-overload]
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(a)
    if not 0 <= lo <= hi <= len(a):
        raise _FuncError(f"index out of range: {hi if lo <= len(a) else lo}")
    return a[lo:hi]


def _kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    return "int" if isinstance(v, int) else "float" if isinstance(v, float) else "string" if isinstance(v, str) else ""


def _eq(a: object, *others: object) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    for b in others:
        ka, kb = _kind(a), _kind(b)
        if ka and kb and ka != kb:
            raise _FuncError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _lt(a: object, b: object) -> bool:
    ka, kb = _kind(a), _kind(b)
    if not ka or not kb or "bool" in (ka, kb):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    return a < b  # type: ignore[operator]


def _sprint(*args: object) -> str:
    """Go's Sprint: a space between operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(show(a))
    return "".join(out)


def _printf(fmt: object, *args: object) -> str:
    _want(str, fmt, "string")
    return sprintf(str(fmt), list(args))


def _one_text(args: tuple[object, ...]) -> str:
    """html, js and urlquery take one string as it is, anything else as print shows it."""
    return args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(*args)


_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&#39;", '"': "&#34;", "\0": "\ufffd"}
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def _html(*args: object) -> str:
    return "".join(_HTML.get(c, c) for c in _one_text(args))


def _js(*args: object) -> str:
    return "".join(
        _JS.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or not c.isprintable() else c) for c in _one_text(args)
    )


def _urlquery(*args: object) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_one_text(args), safe="")


_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_JSON_ESC.update({"\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_str(s: str) -> str:
    return '"' + "".join(_JSON_ESC.get(c) or (f"\\u{ord(c):04x}" if c < " " else c) for c in s) + '"'


def to_json(v: object) -> str:
    """docker's json function: Go's encoder without HTML escaping, map keys sorted, struct
    fields (plain dicts) in their order, no trailing newline."""
    if v is None or v is NO_VALUE:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float_text(v, -6, 21, 1) if v == v and abs(v) != float("inf") else "null"
    if isinstance(v, str):
        return _json_str(v)
    if isinstance(v, list | tuple):
        return "[" + ",".join(to_json(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = _sorted_keys(v) if isinstance(v, Map) else list(v)
        return "{" + ",".join(f"{_json_str(show(k))}:{to_json(v[k])}" for k in keys) + "}"
    if hasattr(v, "__dict__"):
        return to_json({k: x for k, x in vars(v).items() if not k.startswith("_")})
    return _json_str(str(v))


def _split(s: object, sep: object) -> list[str]:
    _want(str, s, "string")
    _want(str, sep, "string")
    return list(str(s)) if sep == "" else str(s).split(str(sep))


def _join(items: object, sep: object) -> str:
    _want((list, tuple), items, "[]string")
    _want(str, sep, "string")
    return str(sep).join(show(x) for x in items)  # type: ignore[attr-defined]


def _title(s: object) -> str:
    _want(str, s, "string")
    return re.sub(r"(?<!\w)\w", lambda m: m.group().upper(), str(s))


def _case(upper: bool) -> Callable[[object], str]:
    def change(s: object) -> str:
        _want(str, s, "string")
        return str(s).upper() if upper else str(s).lower()

    return change


def _pad(s: object, before: object, after: object) -> str:
    _want(str, s, "string")
    _want(int, before, "int")
    _want(int, after, "int")
    return "" if s == "" else " " * before + str(s) + " " * after  # type: ignore[operator]


def _truncate(s: object, n: object) -> str:
    _want(str, s, "string")
    _want(int, n, "int")
    return str(s)[: max(n, 0)]  # type: ignore[call-overload]


def _lazy(*args: object) -> object:  # and, or: the executor evaluates them, lazily
    raise AssertionError("and/or are evaluated by the executor")


# name -> (function, least and most arguments; -1: any number)
FUNCS: dict[str, tuple[Callable[..., object], int, int]] = {
    "and": (_lazy, 1, -1),
    "or": (_lazy, 1, -1),
    "not": (lambda a: not truth(a), 1, 1),
    "len": (_len, 1, 1),
    "index": (_index, 1, -1),
    "slice": (_slice, 1, -1),
    "eq": (_eq, 1, -1),
    "ne": (lambda a, b: not _eq(a, b), 2, 2),
    "lt": (_lt, 2, 2),
    "le": (lambda a, b: _lt(a, b) or _eq(a, b), 2, 2),
    "gt": (lambda a, b: not (_lt(a, b) or _eq(a, b)), 2, 2),
    "ge": (lambda a, b: not _lt(a, b), 2, 2),
    "print": (_sprint, 0, -1),
    "printf": (_printf, 1, -1),
    "println": (lambda *a: " ".join(show(x) for x in a) + "\n", 0, -1),
    "html": (_html, 0, -1),
    "js": (_js, 0, -1),
    "urlquery": (_urlquery, 0, -1),
    "json": (to_json, 1, 1),
    "split": (_split, 2, 2),
    "join": (_join, 2, 2),
    "title": (_title, 1, 1),
    "lower": (_case(False), 1, 1),
    "upper": (_case(True), 1, 1),
    "pad": (_pad, 3, 3),
    "truncate": (_truncate, 2, 2),
}


# ---------------------------------------------------------------------------------------------
# Executor: walks the nodes with dot and the variables.

_NOARG = object()  # no value piped in from the previous command


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Exec:
    def __init__(self, src: str, data: object, out: list[str]) -> None:
        self.src, self.out = src, out
        self.vars: list[list[object]] = [["$", data]]

    def fail(self, node: Node, message: str) -> TemplateError:
        before = self.src[: node.pos]
        col = node.pos - before.rfind("\n") - 1 if "\n" in before else node.pos
        at = self.src[node.pos : node.end]
        return TemplateError(f'template: :{_line(self.src, node.pos)}:{col}: executing "" at <{at}>: {message}')

    def run(self, nodes: list[object], dot: object) -> None:
        for n in nodes:
            if isinstance(n, Text):
                self.out.append(n.text)
            elif isinstance(n, Action):
                v = self.pipe(n.pipe, dot)
                if not n.pipe.decls:
                    self.out.append(show(v))
            elif isinstance(n, Branch):
                mark = len(self.vars)
                try:
                    self.branch(n, dot)
                finally:
                    del self.vars[mark:]
            elif isinstance(n, LoopControl):
                raise _Break() if n.word == "break" else _Continue()

    def branch(self, n: Branch, dot: object) -> None:
        v = self.pipe(n.pipe, dot, bind=n.kind != "range")
        if n.kind != "range":
            if truth(v):
                self.run(n.body, v if n.kind == "with" else dot)
            else:
                self.run(n.otherwise, dot)
            return
        if v is None or v is NO_VALUE:
            items: list[tuple[object, object]] = []
        elif isinstance(v, dict):
            items = [(k, v[k]) for k in _sorted_keys(v)]
        elif isinstance(v, list | tuple):
            items = list(enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            items = [(i, i) for i in range(v)]
        else:
            raise self.fail(n.pipe, f"range can't iterate over {show(v)}")
        if not items:
            self.run(n.otherwise, dot)
            return
        mark = len(self.vars)
        names = n.pipe.decls
        for key, item in items:
            del self.vars[mark:]
            values = [item] if len(names) == 1 else [key, item]
            for name, value in zip(names, values):
                self.bind(name, value, n.pipe.assign)
            try:
                self.run(n.body, item)
            except _Break:
                break
            except _Continue:
                continue

    def bind(self, name: str, value: object, assign: bool) -> None:
        if not assign:
            self.vars.append([name, value])
            return
        for slot in reversed(self.vars):
            if slot[0] == name:
                slot[1] = value
                return

    def lookup(self, name: str) -> object:
        for slot in reversed(self.vars):
            if slot[0] == name:
                return slot[1]
        return NO_VALUE

    def pipe(self, p: Pipe, dot: object, bind: bool = True) -> object:
        v: object = _NOARG
        for cmd in p.cmds:
            v = self.command(cmd, dot, v)
        if bind:
            for name in p.decls:
                self.bind(name, v, p.assign)
        return v

    def command(self, cmd: Command, dot: object, piped: object) -> object:
        first = cmd.args[0]
        if isinstance(first, Ident):
            return self.call(first.name, cmd, cmd.args[1:], dot, piped)
        method = self.method(first, dot) if len(cmd.args) > 1 or piped is not _NOARG else None
        if method is not None:  # `.Label "key"`: a method with arguments, as Go calls it
            args = [self.arg(a, dot) for a in cmd.args[1:]] + ([] if piped is _NOARG else [piped])
            return method(*args)
        if len(cmd.args) > 1 or piped is not _NOARG:
            raise self.fail(first, f"can't give argument to non-function {self.src[first.pos : first.end]}")
        return self.arg(first, dot)

    def arg(self, node: Node, dot: object) -> object:
        if isinstance(node, Field):
            return self.fields(node, dot, node.names)
        if isinstance(node, Variable):
            return self.fields(node, self.lookup(node.name), node.names)
        if isinstance(node, Chain):
            return self.fields(node, self.arg(node.node, dot), node.names)
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Pipe):
            return self.pipe(node, dot)
        if isinstance(node, Ident):
            return self.call(node.name, node, [], dot, _NOARG)
        raise AssertionError(f"unknown node {node!r}")

    def method(self, node: Node, dot: object) -> Callable[..., object] | None:
        """The method a field chain ends in (`.Label` of a document class that defines Label),
        or None when its last name is no method."""
        if isinstance(node, Field):
            base, names = dot, node.names
        elif isinstance(node, Variable):
            base, names = self.lookup(node.name), node.names
        else:
            return None
        if not names:
            return None
        receiver = self.fields(node, base, names[:-1])
        found = getattr(type(receiver), names[-1], None)
        if names[-1].startswith("_") or not callable(found):
            return None
        bound: Callable[..., object] = getattr(receiver, names[-1])
        return bound

    def fields(self, node: Node, v: object, names: list[str]) -> object:
        for name in names:
            if v is NO_VALUE:
                continue
            if v is None:
                raise self.fail(node, f"nil pointer evaluating interface {{}}.{name}")
            if isinstance(v, Map):
                v = v.get(name, NO_VALUE)
            elif isinstance(v, dict):
                if name not in v:
                    raise self.fail(node, f"can't evaluate field {name} in type struct")
                v = v[name]
            elif isinstance(v, str | int | float | list | tuple) or name.startswith("_") or not hasattr(v, name):
                raise self.fail(node, f"can't evaluate field {name} in type {gotype(v)}")
            else:
                v = getattr(v, name)
                v = v() if callable(v) else v
        return v

    def call(self, name: str, node: Node, argnodes: list[Node], dot: object, piped: object) -> object:
        fn, least, most = FUNCS[name]
        count = len(argnodes) + (piped is not _NOARG)
        if count < least or 0 <= most < count:
            want = f"at least {least}" if most < 0 else str(least)
            raise self.fail(node, f"wrong number of args for {name}: want {want} got {count}")
        if name in ("and", "or"):
            v: object = _NOARG
            for a in argnodes:
                v = self.arg(a, dot)
                if truth(v) != (name == "and"):
                    return v
            return v if piped is _NOARG else piped
        args = [self.arg(a, dot) for a in argnodes]
        if piped is not _NOARG:
            args.append(piped)
        try:
            return fn(*args)
        except _ArgError as e:
            raise self.fail(node, str(e)) from None
        except _FuncError as e:
            raise self.fail(node, f"error calling {name}: {e}") from None
