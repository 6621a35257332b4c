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


class Map(dict):  # type: ignore[type-arg]
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
