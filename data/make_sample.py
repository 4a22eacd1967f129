"""Render the sample PDFs in data/sample/ (deterministic: same bytes on every run).

    .venv/bin/python data/make_sample.py            # rewrites data/sample/*.pdf
    .venv/bin/python data/make_sample.py --out DIR  # somewhere else

The public-domain texts (Gettysburg Address, Bliss copy; U.S. Constitution, Preamble and
Article I, Sections 1-3; Declaration of Independence, opening) are transcribed below; the
notes around them were written for this repository and are CC0 (see data/README.md).
Each ``PageBreak`` is placed on purpose so that the facts the reference set asks about
(data/eval/sample.jsonl) sit on a known page. The Markdown and text files are hand-written
and committed as they are; this script does not touch them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent

GETTYSBURG = {
    "file": "gettysburg.pdf",
    "title": "The Gettysburg Address",
    "pages": [
        [
            ("h1", "The Gettysburg Address"),
            ("i", "Abraham Lincoln. The text of the Bliss copy."),
            ("p", ("Four score and seven years ago our fathers brought forth on this continent, a new nation, "
                  "conceived in Liberty, and dedicated to the proposition that all men are created equal.")),
            ("p", ("Now we are engaged in a great civil war, testing whether that nation, or any nation so "
                  "conceived and so dedicated, can long endure. We are met on a great battle-field of that war. "
                  "We have come to dedicate a portion of that field, as a final resting place for those who here "
                  "gave their lives that that nation might live. It is altogether fitting and proper that we "
                  "should do this.")),
            ("p", ("But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow -- "
                  "this ground. The brave men, living and dead, who struggled here, have consecrated it, far "
                  "above our poor power to add or detract. The world will little note, nor long remember what we "
                  "say here, but it can never forget what they did here. It is for us the living, rather, to be "
                  "dedicated here to the unfinished work which they who fought here have thus far so nobly "
                  "advanced. It is rather for us to be here dedicated to the great task remaining before us -- "
                  "that from these honored dead we take increased devotion to that cause for which they gave the "
                  "last full measure of devotion -- that we here highly resolve that these dead shall not have "
                  "died in vain -- that this nation, under God, shall have a new birth of freedom -- and that "
                  "government of the people, by the people, for the people, shall not perish from the earth.")),
            ("p", "Abraham Lincoln<br/>November 19, 1863."),
        ],
        [
            ("h2", "About the address"),
            ("p", ("Lincoln delivered the address on Thursday, November 19, 1863, at the dedication of the "
                  "Soldiers' National Cemetery in Gettysburg, Pennsylvania. The ceremony came four and a half "
                  "months after the Battle of Gettysburg, fought from July 1 to July 3, 1863, in which the Union "
                  "army under George G. Meade turned back the Confederate army under Robert E. Lee.")),
            ("p", ("The invitation to speak came from David Wills, a Gettysburg attorney who organised the "
                  "cemetery on behalf of the Northern states. The main oration of the day was given by Edward "
                  "Everett, a former Secretary of State and former president of Harvard, who spoke for about two "
                  "hours. Lincoln's remarks followed and lasted roughly two minutes.")),
            ("p", ("The opening words count back in scores: four score and seven years is 87 years, which "
                  "takes the reader from 1863 back to 1776 and the Declaration of Independence.")),
        ],
        [
            ("h2", "The five manuscripts"),
            ("p", ("Five manuscript copies of the address in Lincoln's hand are known. Each is named after the "
                  "person who received it: John Nicolay and John Hay, Lincoln's secretaries; Edward Everett; "
                  "the historian George Bancroft; and Alexander Bliss, Bancroft's stepson.")),
            ("p", ("The Bliss copy, written in 1864 for a volume sold to raise money for soldiers, is the only "
                  "copy Lincoln signed and dated. It is the version most often reproduced, including on this "
                  "sample's first page, and it has 272 words. It is kept in the Lincoln Bedroom of the White "
                  "House. The Nicolay and Hay copies are held by the Library of Congress, the Everett copy by "
                  "the Abraham Lincoln Presidential Library in Springfield, Illinois, and the Bancroft copy by "
                  "Cornell University.")),
        ],
    ],
}

CONSTITUTION = {
    "file": "constitution.pdf",
    "title": "Constitution of the United States (excerpt)",
    "pages": [
        [
            ("h1", "The Constitution of the United States"),
            ("i", "Excerpt: the Preamble and Article I, Sections 1 to 3, in the original spelling."),
            ("p", ("Editor's note: the Constitution was signed on September 17, 1787, by 39 delegates to the "
                  "Constitutional Convention meeting in Philadelphia.")),
            ("h2", "Preamble"),
            ("p", ("We the People of the United States, in Order to form a more perfect Union, establish "
                  "Justice, insure domestic Tranquility, provide for the common defence, promote the general "
                  "Welfare, and secure the Blessings of Liberty to ourselves and our Posterity, do ordain and "
                  "establish this Constitution for the United States of America.")),
            ("h2", "Article I"),
            ("h3", "Section 1"),
            ("p", ("All legislative Powers herein granted shall be vested in a Congress of the United States, "
                  "which shall consist of a Senate and House of Representatives.")),
        ],
        [
            ("h3", "Article I, Section 2"),
            ("p", ("The House of Representatives shall be composed of Members chosen every second Year by the "
                  "People of the several States, and the Electors in each State shall have the Qualifications "
                  "requisite for Electors of the most numerous Branch of the State Legislature.")),
            ("p", ("No Person shall be a Representative who shall not have attained to the Age of twenty five "
                  "Years, and been seven Years a Citizen of the United States, and who shall not, when elected, "
                  "be an Inhabitant of that State in which he shall be chosen.")),
            ("p", ("Representatives and direct Taxes shall be apportioned among the several States which may be "
                  "included within this Union, according to their respective Numbers, which shall be determined "
                  "by adding to the whole Number of free Persons, including those bound to Service for a Term of "
                  "Years, and excluding Indians not taxed, three fifths of all other Persons. The actual "
                  "Enumeration shall be made within three Years after the first Meeting of the Congress of the "
                  "United States, and within every subsequent Term of ten Years, in such Manner as they shall by "
                  "Law direct. The Number of Representatives shall not exceed one for every thirty Thousand, but "
                  "each State shall have at Least one Representative; and until such enumeration shall be made, "
                  "the State of New Hampshire shall be entitled to chuse three, Massachusetts eight, "
                  "Rhode-Island and Providence Plantations one, Connecticut five, New-York six, New Jersey four, "
                  "Pennsylvania eight, Delaware one, Maryland six, Virginia ten, North Carolina five, South "
                  "Carolina five, and Georgia three.")),
            ("p", ("When vacancies happen in the Representation from any State, the Executive Authority thereof "
                  "shall issue Writs of Election to fill such Vacancies.")),
            ("p", ("The House of Representatives shall chuse their Speaker and other Officers; and shall have "
                  "the sole Power of Impeachment.")),
        ],
        [
            ("h3", "Article I, Section 3"),
            ("p", ("The Senate of the United States shall be composed of two Senators from each State, chosen "
                  "by the Legislature thereof, for six Years; and each Senator shall have one Vote.")),
            ("p", ("Immediately after they shall be assembled in Consequence of the first Election, they shall "
                  "be divided as equally as may be into three Classes. The Seats of the Senators of the first "
                  "Class shall be vacated at the Expiration of the second Year, of the second Class at the "
                  "Expiration of the fourth Year, and of the third Class at the Expiration of the sixth Year, so "
                  "that one third may be chosen every second Year; and if Vacancies happen by Resignation, or "
                  "otherwise, during the Recess of the Legislature of any State, the Executive thereof may make "
                  "temporary Appointments until the next Meeting of the Legislature, which shall then fill such "
                  "Vacancies.")),
            ("p", ("No Person shall be a Senator who shall not have attained to the Age of thirty Years, and been "
                  "nine Years a Citizen of the United States, and who shall not, when elected, be an Inhabitant "
                  "of that State for which he shall be chosen.")),
            ("p", ("The Vice President of the United States shall be President of the Senate, but shall have no "
                  "Vote, unless they be equally divided.")),
            ("p", ("The Senate shall chuse their other Officers, and also a President pro tempore, in the Absence "
                  "of the Vice President, or when he shall exercise the Office of President of the United "
                  "States.")),
            ("p", ("The Senate shall have the sole Power to try all Impeachments. When sitting for that Purpose, "
                  "they shall be on Oath or Affirmation. When the President of the United States is tried, the "
                  "Chief Justice shall preside: And no Person shall be convicted without the Concurrence of two "
                  "thirds of the Members present.")),
            ("p", ("Judgment in Cases of Impeachment shall not extend further than to removal from Office, and "
                  "disqualification to hold and enjoy any Office of honor, Trust or Profit under the United "
                  "States: but the Party convicted shall nevertheless be liable and subject to Indictment, Trial, "
                  "Judgment and Punishment, according to Law.")),
        ],
    ],
}

DECLARATION = {
    "file": "declaration.pdf",
    "title": "The Declaration of Independence (opening) with notes",
    "pages": [
        [
            ("h1", "In Congress, July 4, 1776"),
            ("i", "The unanimous Declaration of the thirteen united States of America (opening paragraphs)."),
            ("p", ("When in the Course of human events, it becomes necessary for one people to dissolve the "
                  "political bands which have connected them with another, and to assume among the powers of "
                  "the earth, the separate and equal station to which the Laws of Nature and of Nature's God "
                  "entitle them, a decent respect to the opinions of mankind requires that they should declare "
                  "the causes which impel them to the separation.")),
            ("p", ("We hold these truths to be self-evident, that all men are created equal, that they are "
                  "endowed by their Creator with certain unalienable Rights, that among these are Life, Liberty "
                  "and the pursuit of Happiness. -- That to secure these rights, Governments are instituted "
                  "among Men, deriving their just powers from the consent of the governed, -- That whenever any "
                  "Form of Government becomes destructive of these ends, it is the Right of the People to alter "
                  "or to abolish it, and to institute new Government, laying its foundation on such principles "
                  "and organizing its powers in such form, as to them shall seem most likely to effect their "
                  "Safety and Happiness. Prudence, indeed, will dictate that Governments long established should "
                  "not be changed for light and transient causes; and accordingly all experience hath shewn, "
                  "that mankind are more disposed to suffer, while evils are sufferable, than to right "
                  "themselves by abolishing the forms to which they are accustomed. But when a long train of "
                  "abuses and usurpations, pursuing invariably the same Object evinces a design to reduce them "
                  "under absolute Despotism, it is their right, it is their duty, to throw off such Government, "
                  "and to provide new Guards for their future security. -- Such has been the patient sufferance "
                  "of these Colonies; and such is now the necessity which constrains them to alter their former "
                  "Systems of Government. The history of the present King of Great Britain is a history of "
                  "repeated injuries and usurpations, all having in direct object the establishment of an "
                  "absolute Tyranny over these States. To prove this, let Facts be submitted to a candid world.")),
        ],
        [
            ("h2", "Drafting and adoption"),
            ("p", ("On June 11, 1776, the Second Continental Congress, meeting in Philadelphia, appointed a "
                  "Committee of Five to prepare a declaration: John Adams, Benjamin Franklin, Thomas Jefferson, "
                  "Robert R. Livingston and Roger Sherman. Thomas Jefferson wrote the first draft, which Adams "
                  "and Franklin revised before the committee presented it to Congress on June 28, 1776.")),
            ("p", ("Congress voted for independence on July 2, 1776, by approving the resolution Richard Henry "
                  "Lee of Virginia had introduced in June. Two days later, on July 4, 1776, it approved the final "
                  "wording of the Declaration. That night the Philadelphia printer John Dunlap set the text in "
                  "type; about 200 copies of his broadside were printed, of which 26 are known to survive.")),
            ("p", ("After the preamble quoted on the first page, the Declaration lists 27 grievances against "
                  "King George III before its closing resolution.")),
        ],
        [
            ("h2", "Signing and the parchment"),
            ("p", ("A fair copy on parchment, the engrossed Declaration, is believed to be in the hand of "
                  "Timothy Matlack. Most delegates signed it on August 2, 1776; a few added their names later. "
                  "In all there are 56 signatures. John Hancock, the President of Congress, signed first and "
                  "largest, in the centre below the text.")),
            ("p", ("The engrossed parchment is displayed today in the Rotunda for the Charters of Freedom at the "
                  "National Archives in Washington, D.C., beside the Constitution and the Bill of Rights.")),
        ],
    ],
}

DOCUMENTS = [GETTYSBURG, CONSTITUTION, DECLARATION]


def render(doc: dict, out: Path) -> Path:
    """Write one PDF; ``invariant`` fixes the timestamps and IDs so the bytes never change."""
    from reportlab import rl_config
    from reportlab.lib.pagesizes import LETTER
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import inch
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    rl_config.invariant = 1
    styles = getSampleStyleSheet()
    body = styles["BodyText"].clone("body", fontName="Times-Roman", fontSize=11.5, leading=15, spaceAfter=6)
    kinds = {"h1": styles["Heading1"], "h2": styles["Heading2"], "h3": styles["Heading3"],
             "i": styles["Italic"], "p": body}

    def footer(canvas, template):
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawCentredString(LETTER[0] / 2, 0.5 * inch, f"{doc['title']} - page {template.page}")
        canvas.restoreState()

    path = out / doc["file"]
    story = []
    for i, page in enumerate(doc["pages"]):
        if i:
            story.append(PageBreak())
        for kind, text in page:
            story.append(Paragraph(text, kinds[kind]))
            if kind == "i":
                story.append(Spacer(1, 8))
    pdf = SimpleDocTemplate(str(path), pagesize=LETTER, title=doc["title"], author="ragtune sample data",
                            creator="data/make_sample.py", producer="ReportLab", subject="", keywords="",
                            invariant=1, leftMargin=inch, rightMargin=inch, topMargin=inch, bottomMargin=inch)
    pdf.build(story, onFirstPage=footer, onLaterPages=footer)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "sample", help="output folder (default: data/sample)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for doc in DOCUMENTS:
        path = render(doc, args.out)
        print(f"{path} ({len(doc['pages'])} pages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
