#!/usr/bin/env python3
"""Writes the manual page elliott(1) from docs/commands.md, so that the two never disagree.

usage: scripts/man-page.py [docs/commands.md [man/elliott.1]]
       scripts/man-page.py --check    (exit 1 when man/elliott.1 is not what docs/commands.md gives)

Understands the Markdown that commands.md uses: headings, paragraphs, tables (an option
table becomes a list of tagged paragraphs), fenced code, `code`, **bold** and links.
"""
import re
import sys

NAME_LINE = 'elliott \\- run Gemma and llama GGUF models on the CPU and serve an OpenAI-style chat API'

TAIL = r'''.SH FILES
.TP
.I $XDG_CACHE_HOME/elliott/models
where \fBelliott pull\fR puts models (\fI~/.cache/elliott/models\fR when
\fBXDG_CACHE_HOME\fR is unset; \fBELLIOTT_MODELS\fR overrides both).
.TP
.I /etc/default/elliott
settings of the \fBelliott.service\fR systemd unit: \fBELLIOTT_ARGS\fR (the options of
\fBelliott serve\fR) and any \fBELLIOTT_*\fR variable.
.TP
.I /var/lib/elliott/models
the service's models (its state directory).
.SH SEE ALSO
The HTTP API, errors, streaming and privacy: \fI/usr/share/doc/elliott/api.md\fR
(\fIdocs/api.md\fR in the source).
'''


def inline(text):
    """Markdown inline markup to roff."""
    text = text.replace('\\|', '|').replace('\\', '\\e')
    text = re.sub(r'\[([^\]]+)\]\([^)]+\)', r'\1', text)
    out = []
    for i, part in enumerate(re.split(r'(`[^`]*`)', text)):
        if i % 2:
            code = part[1:-1].replace('-', '\\-').replace(',', ',\\:')  # \: a place to break a long span
            out.append('\\fB' + code + '\\fR')
        else:
            out.append(re.sub(r'\*\*([^*]+)\*\*', r'\\fB\1\\fR', part))
    return ''.join(out)


def line_safe(text):
    """A roff text line must not start with a control character."""
    return '\\&' + text if text[:1] in ('.', "'") else text


def cells(row):
    return [c.strip() for c in re.split(r'(?<!\\)\|', row.strip())[1:-1]]


def table(rows, out):
    head = [c.lower() for c in cells(rows[0])]
    for row in rows[2:]:
        c = cells(row)
        out.append('.TP')
        out.append(line_safe(inline(c[0])))
        body = inline(c[-1])
        extra = ['%s: %s' % (head[i], inline(c[i])) for i in range(1, len(c) - 1) if c[i]]
        if extra:
            body += ' (' + '; '.join(extra) + ')'
        out.append(line_safe(body))


def convert(markdown, version):
    out = ['.\\" Generated from docs/commands.md by scripts/man-page.py; edit those, not this.',
           '.TH ELLIOTT 1 "" "elliott %s" "User Commands"' % version,
           '.nh', '.ad l',
           '.SH NAME', NAME_LINE,
           '.SH SYNOPSIS', '\\fBelliott\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]', '.br',
           '\\fBelliott\\fR \\fB\\-\\-version\\fR | \\fBversion\\fR', '.br',
           '\\fBelliott\\fR \\fB\\-\\-help\\fR',
           '.SH DESCRIPTION']
    lines = markdown.split('\n')
    i = 0
    in_commands = False
    paragraph = []

    def flush():
        if paragraph:
            out.append('.PP')  # joined first: a `code` span may cross a line break
            out.append(line_safe(inline(' '.join(paragraph))))
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith('```'):
            flush()
            i += 1
            out.extend(['.PP', '.RS 4', '.nf'])
            while i < len(lines) and not lines[i].startswith('```'):
                out.append(line_safe(lines[i].replace('\\', '\\e').replace('-', '\\-')))
                i += 1
            out.extend(['.fi', '.RE'])
        elif line.startswith('# '):
            flush()
        elif line.startswith('## '):
            flush()
            title = line[3:].strip()
            if title.lower() == 'conventions':
                out.append('.SH CONVENTIONS')
            else:
                if not in_commands:
                    out.append('.SH COMMANDS')
                    in_commands = True
                out.append('.SS "elliott %s"' % title)
        elif line.startswith('|'):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith('|'):
                rows.append(lines[i])
                i += 1
            table(rows, out)
            continue
        elif line.strip() in ('', '---'):
            flush()
        else:
            paragraph.append(line.strip())
        i += 1
    flush()
    return '\n'.join(out) + '\n' + TAIL


def main():
    args = sys.argv[1:]
    check = args[:1] == ['--check']
    if check:
        args = args[1:]
    src = args[0] if args else 'docs/commands.md'
    dst = args[1] if len(args) > 1 else 'man/elliott.1'
    version = open('VERSION').read().strip()
    page = convert(open(src, encoding='utf-8').read(), version)
    if check:
        try:
            current = open(dst, encoding='utf-8').read()
        except FileNotFoundError:
            current = None
        if current != page:
            sys.exit('%s is not what %s gives: run scripts/man-page.py' % (dst, src))
        return
    with open(dst, 'w', encoding='utf-8') as f:
        f.write(page)


main()
