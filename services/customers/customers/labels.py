"""QR maintenance-code labels: PNG (qrcode + Pillow) in a ZIP, and a printable PDF sheet (reportlab).

Pure functions over (sequence, code) pairs and the scan URL's prefix (each label encodes
prefix + code), so the gateway streams an export
without the customers service shipping megabytes over RPC, and the benchmark calls the same code.
"""
import glob
import io
import os
import zipfile
from functools import lru_cache
from typing import BinaryIO, Iterable

import qrcode
from PIL import Image, ImageDraw, ImageFont

from .domain import printed_code
from .settings import customers_settings

# Fonts that have CJK glyphs (company names are Chinese). LABEL_FONT names one explicitly.
CJK_FONT_PATTERNS = (
    "/usr/share/fonts/**/wqy-microhei.ttc", "/usr/share/fonts/**/wqy-zenhei.ttc",
    "/usr/share/fonts/**/NotoSansCJK*.tt[cf]", "/usr/share/fonts/**/NotoSansSC*.[ot]tf",
    "/usr/share/fonts/**/SourceHanSans*.tt[cf]", "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.tt[cf]",
)
FALLBACK_FONTS = ("/usr/share/fonts/**/DejaVuSans.ttf",)

LABEL_W, LABEL_H = 400, 480  # px, a 50 × 60 mm sticker at ~200 dpi
QR_SIZE = 320


@lru_cache(maxsize=1)
def font_path() -> str | None:
    """A font with CJK glyphs if the machine has one (else a Latin one: Chinese would print as boxes)."""
    explicit = customers_settings().label_font
    if explicit and os.path.exists(explicit):
        return explicit
    for pattern in CJK_FONT_PATTERNS + FALLBACK_FONTS:
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            return found[0]
    return None


def has_cjk_font() -> bool:
    path = font_path()
    return path is not None and not path.endswith("DejaVuSans.ttf")


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    path = font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default()


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR modules of `data`. Error correction M; a fixed mask pattern skips the search over the
    eight masks (a valid choice by the standard, and ~6× faster for batches of thousands), and the
    version is looked up once per data length (every code of a batch has the same URL length)."""
    qr = qrcode.QRCode(version=_version_for(len(data.encode())), error_correction=qrcode.constants.ERROR_CORRECT_M,
                       box_size=1, border=4, mask_pattern=2)
    qr.add_data(data)
    qr.make(fit=False)
    return qr.get_matrix()


@lru_cache(maxsize=64)
def _version_for(length: int) -> int:
    probe = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, mask_pattern=2)
    probe.add_data("~" * length)  # byte mode: what a URL with lower-case letters is encoded in
    probe.make(fit=True)
    return probe.version


def qr_image(data: str, size: int = QR_SIZE, scale: int | None = None, mode: str = "L") -> Image.Image:
    """The QR of `data` as an image, about `size` pixels wide (or `scale` pixels per module)."""
    matrix = qr_matrix(data)
    n = len(matrix)
    image = Image.new(mode, (n, n))
    image.putdata([0 if dark else 255 for row in matrix for dark in row])
    scale = scale or max(1, size // n)
    return image.resize((n * scale, n * scale), Image.NEAREST)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, size: int, width: int) -> tuple[str, ImageFont.ImageFont]:
    font = _font(size)
    while draw.textlength(text, font=font) > width and len(text) > 1:
        text = text[:-1]
    return text, font


@lru_cache(maxsize=16)
def _blank_label(company: str) -> Image.Image:
    """The part every label of a company shares (white sticker, company name): drawn once."""
    canvas = Image.new("L", (LABEL_W, LABEL_H), 255)
    draw = ImageDraw.Draw(canvas)
    name, font = _fit_text(draw, company, 26, LABEL_W - 20)
    draw.text((LABEL_W // 2, 28), name, font=font, fill=0, anchor="mm")
    return canvas


def label_png(url: str, code: str, company: str) -> bytes:
    """One sticker: company name above, the QR (the scan URL), the printed code below."""
    canvas = _blank_label(company).copy()
    qr = qr_image(url)
    canvas.paste(qr, ((LABEL_W - qr.width) // 2, 52))
    draw = ImageDraw.Draw(canvas)
    draw.text((LABEL_W // 2, 52 + qr.height + 28), printed_code(code), font=_font(30), fill=0, anchor="mm")
    buffer = io.BytesIO()
    # 1-bit, as label printers print: a third of the encoding time and of the size of grey PNGs.
    canvas.convert("1", dither=Image.Dither.NONE).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _label_files(chunk: list[tuple[int, str]], url_prefix: str, company: str, prefix: str) -> list[tuple[str, bytes]]:
    return [(f"{prefix}{seq:05d}-{printed_code(code)}.png", label_png(url_prefix + code, code, company))
            for seq, code in chunk]


PARALLEL_FROM = 2000  # below this, starting worker processes costs more than it saves
CHUNK = 250
DEFAULT_WORKERS = min(os.cpu_count() or 1, 4)


def write_zip(out: BinaryIO, codes: Iterable[tuple[int, str]], url_prefix: str, company: str,
              batch_number: str = "", workers: int | None = None) -> int:
    """A ZIP of one PNG per code, each encoding `url_prefix + code` (PNG is compressed already: stored,
    not deflated). Large batches are rendered by worker processes, in order, a chunk at a time, so
    memory stays flat. Returns the count."""
    codes = list(codes)
    prefix = f"{batch_number}-" if batch_number else ""
    chunks = [codes[i:i + CHUNK] for i in range(0, len(codes), CHUNK)]
    workers = workers if workers is not None else DEFAULT_WORKERS
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        if workers > 1 and len(codes) >= PARALLEL_FROM:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            # spawn, not fork: the caller (the gateway) has threads and an event loop.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = pool.map(_label_files, chunks, [url_prefix] * len(chunks), [company] * len(chunks),
                                   [prefix] * len(chunks))
                for files in results:
                    for name, png in files:
                        archive.writestr(name, png)
        else:
            for chunk in chunks:
                for name, png in _label_files(chunk, url_prefix, company, prefix):
                    archive.writestr(name, png)
    return len(codes)


# -- PDF label sheet ---------------------------------------------------------------------------

def _pdf_font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    # A CID font needs no font file: every PDF reader has the Adobe Song glyphs for Chinese.
    if "STSong-Light" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light"


def _draw_qr(pdf, matrix: list[list[bool]], x: float, y: float, side: float) -> None:
    """Vector modules (sharp at any print resolution), one rectangle per horizontal run of dark ones."""
    module = side / len(matrix)
    path = pdf.beginPath()
    for r, line in enumerate(matrix):
        c = 0
        while c < len(line):
            if line[c]:
                start = c
                while c < len(line) and line[c]:
                    c += 1
                path.rect(x + start * module, y + side - (r + 1) * module, (c - start) * module, module)
            else:
                c += 1
    pdf.drawPath(path, stroke=0, fill=1)


def write_pdf(out: BinaryIO, codes: Iterable[tuple[int, str]], url_prefix: str, company: str,
              columns: int = 4, rows: int = 6) -> int:
    """A4 sheets of labels (4 × 6 per page by default), ready for sticker paper. Returns the count."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas as pdf_canvas

    font = _pdf_font()
    page_w, page_h = A4
    margin = 8 * mm
    cell_w, cell_h = (page_w - 2 * margin) / columns, (page_h - 2 * margin) / rows
    pdf = pdf_canvas.Canvas(out, pagesize=A4, pageCompression=1)  # compressed pages: less memory too
    pdf.setTitle(f"{company} 维保编码")
    count = 0
    for seq, code in codes:
        slot = count % (columns * rows)
        if count and slot == 0:
            pdf.showPage()
        col, row = slot % columns, slot // columns
        x0, top = margin + col * cell_w, page_h - margin - row * cell_h
        pdf.setLineWidth(0.3)
        pdf.setDash(2, 2)
        pdf.rect(x0 + 1, top - cell_h + 1, cell_w - 2, cell_h - 2)  # cutting guide
        pdf.setDash()
        pdf.setFont(font, 8)
        pdf.drawCentredString(x0 + cell_w / 2, top - 10, company[:24])
        side = min(cell_w, cell_h - 26) - 6
        qx, qy = x0 + (cell_w - side) / 2, top - 14 - side
        _draw_qr(pdf, qr_matrix(url_prefix + code), qx, qy, side)
        pdf.setFont("Helvetica-Bold", 9)
        pdf.drawCentredString(x0 + cell_w / 2, qy - 9, printed_code(code))
        count += 1
    if count == 0:
        pdf.setFont(font, 12)
        pdf.drawString(margin, page_h - margin - 12, "（无编码）")
    pdf.save()
    return count
