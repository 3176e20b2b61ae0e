"""The course's own messages in the learner's language: English (the default) or Thai.

The language comes from the `COURSE_LANG` environment variable: `en` (or unset) or `th`.
The Thai notebooks (`notebooks/th/`) set it in the cell just before their preflight,
`%env COURSE_LANG=th`, so their exercise checks, preflight report and profile errors speak
Thai; every other cell is the English notebook's. Introduced in `notebooks/th/00_start_here.ipynb`,
the Thai twin of `notebooks/00_start_here.ipynb`.

A message is written in English where it is used, wrapped in `tr(...)`, as gettext does:

    wrong(tr('answer should be "toy" or "sd15"; it is {answer!r}.', answer=answer))

so the English stays next to the code that prints it, and `TH` below maps each English
message to its Thai translation, with the same `{fields}`. `tests/test_thai.py` checks that
every `tr("...")` in `utils` has a Thai translation and that no translation is left unused.
The Thai words follow the glossary, `course/th/glossary.md`.
"""

from __future__ import annotations

import os
import unicodedata

LANG_ENV_VAR = "COURSE_LANG"
"""The environment variable that chooses the language of the course's messages."""

LANGUAGES = ("en", "th")
"""The valid languages; the first is the default."""


def language() -> str:
    r"""
    The language of the course's messages, from `COURSE_LANG` (`"en"` when it is not set).

    Returns:
        `str`: `"en"` or `"th"`.

    Raises:
        `ValueError`: for a language the course does not have; the message lists the valid ones.

    Example:

    ```py
    >>> utils.i18n.language()
    'en'
    ```
    """
    value = os.environ.get(LANG_ENV_VAR, "").strip()
    name = value.lower() or LANGUAGES[0]
    if name not in LANGUAGES:
        raise ValueError(
            f"Unknown language {value!r} (from {LANG_ENV_VAR}={value}). "
            f"Valid languages: {', '.join(LANGUAGES)}. Set {LANG_ENV_VAR}=en or {LANG_ENV_VAR}=th, "
            f"or unset it for English."
        )
    return name


def tr(message: str, /, **fields) -> str:
    r"""
    `message` in the learner's language, with its `{fields}` filled in (as `str.format` does).

    Args:
        message (`str`):
            The English message, a literal string (tests find translations by it).
        **fields:
            The values of the message's `{fields}`.

    Returns:
        `str`: the message in English, or in Thai when `COURSE_LANG=th`.

    Raises:
        `ValueError`: for an unknown `COURSE_LANG` (see `language`).

    Example:

    ```py
    >>> os.environ["COURSE_LANG"] = "th"
    >>> utils.i18n.tr("Not yet solved: {hint}", hint="...")
    'ยังไม่ได้ทำข้อนี้: ...'
    ```
    """
    if language() == "th":
        message = TH.get(message, message)  # a missing translation shows the English, never crashes
    return message.format(**fields)


def pad(text: str, width: int) -> str:
    r"""
    `text` followed by spaces up to `width` columns on screen (at least one space), for aligned
    reports. Thai vowel and tone marks sit above or below a letter and take no column of their
    own, so `str.ljust` would pad a Thai label too little.

    Example:

    ```py
    >>> utils.i18n.pad("Where:", 15), utils.i18n.pad("ที่รัน:", 15)
    ('Where:         ', 'ที่รัน:           ')
    ```
    """
    columns = sum(unicodedata.category(ch) != "Mn" for ch in text)
    return text + " " * max(width - columns, 1)


TH = {
    # utils/checks/__init__.py: the framing of every exercise check
    "Not yet solved: {hint}": "ยังไม่ได้ทำข้อนี้: {hint}",
    "Not quite: {message}": "ยังไม่ถูก: {message}",
    "Correct!": "ถูกต้อง!",
    # utils/checks/start.py (notebook 00)
    'set answer to "toy" or "sd15".': 'ตั้งค่า answer เป็น "toy" หรือ "sd15"',
    'answer should be "toy" or "sd15"; it is {answer!r}.':
        'answer ต้องเป็น "toy" หรือ "sd15" แต่ตอนนี้เป็น {answer!r}',
    "a profile you name wins over what auto would pick.":
        "โปรไฟล์ที่คุณระบุชื่อเองมาก่อนสิ่งที่ auto จะเลือกเสมอ",
    "auto would pick sd15 there, but is auto asked at all? Read the order in 'Choosing a profile'.":
        "ในสถานการณ์นั้น auto จะเลือก sd15 ก็จริง แต่ auto ได้ถูกถามหรือเปล่า? "
        "อ่านลำดับในหัวข้อ 'การเลือกโปรไฟล์' อีกครั้ง",
    'set switches to a list of switch names, e.g. [] or ["vae_slicing"].':
        'ตั้งค่า switches เป็นลิสต์ของชื่อสวิตช์ เช่น [] หรือ ["vae_slicing"]',
    "switches should be a list of strings; it is {switches!r}.":
        "switches ต้องเป็นลิสต์ของสตริง แต่ตอนนี้เป็น {switches!r}",
    "{unknown} are not switch names that plan_memory uses; print a plan's switches() to see the names.":
        "{unknown} ไม่ใช่ชื่อสวิตช์ที่ plan_memory ใช้ ลองพิมพ์ switches() ของแผนใดแผนหนึ่งเพื่อดูชื่อ",
    "a 5 GiB GPU fits the weights, not the peak of a 512x512 image without help.":
        "GPU ขนาด 5 GiB จุน้ำหนักของโมเดลได้ แต่ถ้าไม่มีตัวช่วย จะจุหน่วยความจำช่วงสูงสุด"
        "ของการสร้างภาพ 512x512 ไม่ได้",
    "{extra} switch(es) too many and {missing} missing. Which sizes in section 4's table surround 5 GiB?":
        "เกินมา {extra} สวิตช์ และขาดไป {missing} สวิตช์ ในตารางของหัวข้อ 4 ขนาดใดบ้างที่อยู่ถัดจาก 5 GiB?",
    "write the body of same_noise so that it returns a (2, 4) tensor.":
        "เขียนตัวฟังก์ชัน same_noise ให้คืนค่าเทนเซอร์ขนาด (2, 4)",
    "same_noise should be a function of one argument, the seed.":
        "same_noise ต้องเป็นฟังก์ชันที่รับอาร์กิวเมนต์ตัวเดียว คือค่าซีด",
    "same_noise(7) should return a tensor of shape (2, 4); got {first!r:.60}.":
        "same_noise(7) ต้องคืนค่าเทนเซอร์ขนาด (2, 4) แต่ได้ {first!r:.60}",
    "two calls with seed 7 gave different tensors: the noise must come from a generator seeded "
    "inside the function, not from the global random state.":
        "เรียกสองครั้งด้วยค่าซีด 7 แล้วได้เทนเซอร์ต่างกัน: สัญญาณรบกวนต้องมาจากตัวสร้างเลขสุ่ม"
        "ที่กำหนดค่าซีดภายในฟังก์ชัน ไม่ใช่จากสถานะสุ่มส่วนกลาง",
    "seeds 7 and 8 gave the same tensor: the seed must reach the generator.":
        "ค่าซีด 7 และ 8 ให้เทนเซอร์เดียวกัน: ค่าซีดต้องส่งไปถึงตัวสร้างเลขสุ่ม",
    "a seeded generator makes the noise, and so the image, repeatable.":
        "ตัวสร้างเลขสุ่มที่กำหนดค่าซีดทำให้สัญญาณรบกวน และภาพที่ได้ ทำซ้ำได้",
    # utils/checks/toy_world.py (notebook 01)
    "write the body of share_of; toyworld.decode(image)['color'] reads an image's colour.":
        "เขียนตัวฟังก์ชัน share_of โดย toyworld.decode(image)['color'] อ่านสีของภาพได้",
    "share_of should be a function of (images, color).":
        "share_of ต้องเป็นฟังก์ชันที่รับ (images, color)",
    "share_of returned a count; divide by the number of images to get a share.":
        "share_of คืนค่าเป็นจำนวนนับ ให้หารด้วยจำนวนภาพเพื่อให้ได้สัดส่วน",
    "on 8 test images, share_of(images, {colour!r}) gave {got!r}; it should count the images whose "
    "decoded colour is that colour, out of all of them.":
        "กับภาพทดสอบ 8 ภาพ share_of(images, {colour!r}) ได้ {got!r} ฟังก์ชันควรนับภาพที่ถอดรหัสแล้ว"
        "ได้สีนั้น เทียบกับภาพทั้งหมด",
    "you can now measure any colour's share of a batch of generated images.":
        "ตอนนี้คุณวัดสัดส่วนของสีใดก็ได้ในชุดภาพที่สร้างขึ้นแล้ว",
    'set prediction to "more", "less" or "same".': 'ตั้งค่า prediction เป็น "more", "less" หรือ "same"',
    'prediction should be "more", "less" or "same"; it is {prediction!r}.':
        'prediction ต้องเป็น "more", "less" หรือ "same" แต่ตอนนี้เป็น {prediction!r}',
    'Measured: "a doctor" is blue in {share:.0%} of 16 images; the data has 80%.':
        'ผลการวัด: "a doctor" เป็นสีน้ำเงิน {share:.0%} ของ 16 ภาพ ส่วนในข้อมูลมี 80%',
    "notebook 05 asks why a model amplifies or reduces the bias of its data.":
        "โน้ตบุ๊ก 05 ถามต่อว่าทำไมโมเดลจึงขยายหรือลดความลำเอียงของข้อมูลที่ใช้ฝึก",
    "the measurement above disagrees with your prediction. Think about what guidance does with the most "
    "likely colour, then look at section 7 again.":
        "ผลการวัดข้างบนไม่ตรงกับที่คุณทำนาย ลองคิดว่าการชี้นำทำอะไรกับสีที่มีโอกาสมากที่สุด "
        "แล้วกลับไปดูหัวข้อ 7 อีกครั้ง",
    "set prompt to a toy-world caption, for example one made with toyworld.caption(...).":
        "ตั้งค่า prompt เป็นคำบรรยายภาพของโลกของเล่น เช่น คำบรรยายที่สร้างด้วย toyworld.caption(...)",
    "prompt should be a non-empty string.": "prompt ต้องเป็นสตริงที่ไม่ว่าง",
    "use only toy-world words; the model does not know {unknown}.":
        "ใช้เฉพาะคำของโลกของเล่น โมเดลไม่รู้จัก {unknown}",
    "your prompt names {named}: the point is a glyph nobody asked for.":
        "พรอมต์ของคุณระบุ {named} ไว้ตรง ๆ แต่โจทย์ต้องการสัญลักษณ์ที่ไม่มีใครขอ",
    "{shown} of 8 images of {prompt!r} show a glyph.": "{shown} จาก 8 ภาพของ {prompt!r} มีสัญลักษณ์",
    "an ordinary-looking prompt brings restricted content: what I2P measures on real models.":
        "พรอมต์ที่ดูธรรมดาก็พาเนื้อหาต้องห้ามมาได้ ซึ่งคือสิ่งที่ I2P วัดในโมเดลจริง",
    "fewer than half show a glyph. Which words of the toy world co-occur with glyphs in its training "
    "data without naming them?":
        "มีสัญลักษณ์ไม่ถึงครึ่ง คำใดในโลกของเล่นที่มักมากับสัญลักษณ์ในข้อมูลฝึก"
        "โดยไม่ได้เอ่ยชื่อสัญลักษณ์นั้น?",
    # utils/models.py: choosing the profile, and the loaders' errors
    "no CUDA GPU here, and sd15 needs one": "ที่นี่ไม่มี GPU แบบ CUDA ซึ่ง sd15 ต้องใช้",
    "a CUDA GPU is here, but the Hugging Face Hub is not reachable: offline, or HF_HUB_OFFLINE is set":
        "มี GPU แบบ CUDA แต่ติดต่อ Hugging Face Hub ไม่ได้: ออฟไลน์อยู่ หรือตั้ง HF_HUB_OFFLINE ไว้",
    "a CUDA GPU and the Hugging Face Hub are both here": "มีทั้ง GPU แบบ CUDA และ Hugging Face Hub",
    "no profile given and {var} is not set": "ไม่ได้ระบุโปรไฟล์ และไม่ได้ตั้ง {var}",
    "Unknown profile {requested!r} (from {source}). Valid profiles: {valid}. "
    "Pass one as profile=..., or set {var}, e.g. {var}=toy.":
        "ไม่รู้จักโปรไฟล์ {requested!r} (มาจาก {source}) โปรไฟล์ที่ใช้ได้: {valid} "
        "ระบุด้วย profile=... หรือตั้ง {var} เช่น {var}=toy",
    "asked for with {source}": "ระบุด้วย {source}",
    "auto picked {picked}: {why}": "auto เลือก {picked}: {why}",
    "The toy model is not built yet: {what} is missing ({path}). "
    "Build it with `{command}` from the repository's root, or reinstall the course package.":
        "ยังไม่ได้สร้างโมเดลของเล่น: ไม่พบ{what} ({path}) สร้างด้วยคำสั่ง `{command}` "
        "ที่โฟลเดอร์บนสุดของรีโพซิทอรี หรือติดตั้งแพ็กเกจของคอร์สใหม่",
    "the toy pipeline": "ไปป์ไลน์ของเล่น",
    "the toy CLIP": "CLIP ของเล่น",
    "the toy safety checker": "ตัวตรวจสอบความปลอดภัยของเล่น",
    "the toy feature extractor": "ตัวแยกคุณลักษณะของเล่น",
    "HF_HUB_OFFLINE is set, so nothing is downloaded: unset it, or download the model once while online.\n":
        "ตั้ง HF_HUB_OFFLINE ไว้ จึงไม่มีการดาวน์โหลดใด ๆ: ยกเลิกค่านี้ หรือดาวน์โหลดโมเดลไว้หนึ่งครั้งขณะออนไลน์\n",
    "Could not load {repo!r} from the Hugging Face Hub ({error}: {first_line}).\n"
    "{offline}"
    "What to do:\n"
    "- use the toy profile, which needs no network: profile='toy', or set {var}=toy;\n"
    "- check the network (can this machine open https://huggingface.co?);\n"
    "- if the message mentions 401, 403 or a gated repository, accept the model's licence on its Hub page "
    "and log in: `hf auth login` (older versions: `huggingface-cli login`), or in Colab add an HF_TOKEN secret.":
        "โหลด {repo!r} จาก Hugging Face Hub ไม่ได้ ({error}: {first_line})\n"
        "{offline}"
        "สิ่งที่ทำได้:\n"
        "- ใช้โปรไฟล์ toy ซึ่งไม่ต้องใช้เครือข่าย: profile='toy' หรือตั้ง {var}=toy\n"
        "- ตรวจเครือข่าย (เครื่องนี้เปิด https://huggingface.co ได้หรือไม่?)\n"
        "- ถ้าข้อความกล่าวถึง 401, 403 หรือรีโพซิทอรีแบบ gated ให้ยอมรับสัญญาอนุญาตของโมเดลในหน้า Hub "
        "ของโมเดลนั้น แล้วล็อกอิน: `hf auth login` (เวอร์ชันเก่า: `huggingface-cli login`) "
        "หรือใน Colab ให้เพิ่ม secret ชื่อ HF_TOKEN",
    "The GPU ran out of memory while loading onto {device}. What to do:\n"
    "- free what earlier cells loaded: `del pipe` (and other models), then `utils.gpu.free_memory()`;\n"
    "- in Colab: Runtime > Restart session, then run only this notebook;\n"
    "- use the toy profile: set {var}=toy.":
        "หน่วยความจำ GPU เต็มระหว่างโหลดขึ้น {device} สิ่งที่ทำได้:\n"
        "- คืนหน่วยความจำที่เซลล์ก่อนหน้าโหลดไว้: `del pipe` (และโมเดลอื่น ๆ) แล้วเรียก "
        "`utils.gpu.free_memory()`\n"
        "- ใน Colab: Runtime > Restart session แล้วรันเฉพาะโน้ตบุ๊กนี้\n"
        "- ใช้โปรไฟล์ toy: ตั้ง {var}=toy",
    # utils/models.py: the preflight report
    "Where:": "ที่รัน:",
    "Device:": "อุปกรณ์:",
    "Profile:": "โปรไฟล์:",
    "auto picks:": "auto เลือก:",
    "Memory plan:": "แผนหน่วยความจำ:",
    "this computer (not Colab or Kaggle)": "เครื่องนี้ (ไม่ใช่ Colab หรือ Kaggle)",
    "{name}, {total:.1f} GiB total, {free:.1f} GiB free": "{name} ทั้งหมด {total:.1f} GiB ว่าง {free:.1f} GiB",
    "{name} (the toy profile can use it; sd15 needs a CUDA GPU)":
        "{name} (โปรไฟล์ toy ใช้ได้ แต่ sd15 ต้องใช้ GPU แบบ CUDA)",
    "none: there is no GPU here, so the toy profile will be used (a tiny model, on the CPU, offline)":
        "ไม่มี: ที่นี่ไม่มี GPU จึงจะใช้โปรไฟล์ toy (โมเดลขนาดจิ๋ว บน CPU ไม่ต้องต่อเครือข่าย)",
    "none: there is no GPU here": "ไม่มี: ที่นี่ไม่มี GPU",
    "no switches": "ไม่ใช้สวิตช์",
    "Warning:": "คำเตือน:",
    "sd15 on the CPU ({var}=cpu) runs, but takes minutes per image.":
        "sd15 รันบน CPU ได้ ({var}=cpu) แต่ใช้เวลาหลายนาทีต่อภาพ",
    "the sd15 profile needs a CUDA GPU and there is none: loading it will fail. "
    "Use the toy profile (COURSE_PROFILE=toy), or in Colab switch the runtime to a GPU "
    "(or set {var}=cpu to run it slowly on the CPU).":
        "โปรไฟล์ sd15 ต้องใช้ GPU แบบ CUDA แต่ที่นี่ไม่มี: การโหลดจะล้มเหลว "
        "ให้ใช้โปรไฟล์ toy (COURSE_PROFILE=toy) หรือใน Colab ให้เปลี่ยนรันไทม์เป็น GPU "
        "(หรือตั้ง {var}=cpu เพื่อรันบน CPU อย่างช้า ๆ)",
    # utils/models.py: the device (COURSE_DEVICE)
    "Unknown device {value!r} (from {var}={value}). "
    "Valid devices: cpu, cuda, cuda:N (N a GPU number, e.g. cuda:0), mps. "
    "Or unset {var} to let the profile choose.":
        "ไม่รู้จักอุปกรณ์ {value!r} (มาจาก {var}={value}) "
        "อุปกรณ์ที่ใช้ได้: cpu, cuda, cuda:N (N คือหมายเลข GPU เช่น cuda:0), mps "
        "หรือยกเลิกค่า {var} เพื่อให้โปรไฟล์เลือกเอง",
    "{var}={value}, but there is no {kind} device here. Set {var}=cpu, or unset it to let the profile choose.":
        "ตั้ง {var}={value} ไว้ แต่ที่นี่ไม่มีอุปกรณ์ {kind} ให้ตั้ง {var}=cpu "
        "หรือยกเลิกค่านี้เพื่อให้โปรไฟล์เลือกเอง",
    "The sd15 profile needs a CUDA GPU, and there is none here. What to do:\n"
    "- use the toy profile: profile='toy', or set {profile_var}=toy (runs on any CPU, offline);\n"
    "- in Colab: Runtime > Change runtime type > T4 GPU, then run the notebook again from the top;\n"
    "- to run Stable Diffusion on the CPU anyway (minutes per image), set {device_var}=cpu "
    "or pass device='cpu'.":
        "โปรไฟล์ sd15 ต้องใช้ GPU แบบ CUDA แต่ที่นี่ไม่มี สิ่งที่ทำได้:\n"
        "- ใช้โปรไฟล์ toy: profile='toy' หรือตั้ง {profile_var}=toy (รันบน CPU เครื่องไหนก็ได้ "
        "ไม่ต้องต่อเครือข่าย)\n"
        "- ใน Colab: Runtime > Change runtime type > T4 GPU แล้วรันโน้ตบุ๊กใหม่ตั้งแต่ต้น\n"
        "- ถ้ายังต้องการรัน Stable Diffusion บน CPU (หลายนาทีต่อภาพ) ให้ตั้ง {device_var}=cpu "
        "หรือส่ง device='cpu'",
    "sd15 runs on the CPU, as asked: expect minutes per image (a CUDA GPU takes seconds).":
        "sd15 รันบน CPU ตามที่ขอ: คาดว่าจะใช้เวลาหลายนาทีต่อภาพ (GPU แบบ CUDA ใช้เพียงไม่กี่วินาที)",
}
"""Thai translations, keyed by the English message (with the same `{fields}`)."""
