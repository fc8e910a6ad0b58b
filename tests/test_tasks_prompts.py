"""Each real task's default prompt is the benchmark's official prompt, string for string, on fixture
rows that are real items. The expected strings are copied from the official repositories' files
(MathVista data/query.json; MathVerse output_templates/output_testmini.json) or built by hand from
the official templates (MATH-V models/*.py; DynaMath evaluation/*_json_eval.py; MMStar's and
OCRBench's evaluation code)."""

from __future__ import annotations

from test_tasks_hooks import docs_of, prompt_of

# MathVista data/query.json, verbatim
MATHVISTA_QUERIES = {
    "2": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, "
         "at the end.\nQuestion: what is the total volume of the measuring cup? (Unit: g)",
    "8": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
         "Question: Is the number of tiny gray bicycles that are on the left side of the brown metal sedan greater "
         "than the number of things that are to the left of the tiny green bicycle?\nChoices:\n(A) Yes\n(B) No",
    "506": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., "
           "[1, 2, 3], [1.2, 1.3, 1.4], at the end.\nQuestion: Between which two years does the line  graph saw "
           "its maximum peak?",
    "5": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
         "Question: Find $m\\angle H$\nChoices:\n(A) 97\n(B) 102\n(C) 107\n(D) 122",
}
MATHV_INSTRUCTION = ('Please solve the problem and put your answer in one "\\boxed{}". If it is a multiple choice '
                     'question, only one letter is allowed in the "\\boxed{}".\n')


def _doc(task: str, key: str, value: str) -> dict:
    return next(doc for doc in docs_of(task) if str(doc[key]) == value)


def test_mathvista_prompt_is_the_published_query_with_its_unit():
    for task in ("mvlm_mathvista_general", "mvlm_mathvista_math"):
        for doc in docs_of(task):
            if doc["pid"] in MATHVISTA_QUERIES:
                assert prompt_of(task, doc) == MATHVISTA_QUERIES[doc["pid"]]


def test_mathverse_prompt_is_query_wo():
    text_lite = _doc("mvlm_mathverse", "sample_index", "3424")
    assert prompt_of("mvlm_mathverse", text_lite) == (
        "Please directly answer the question and provide the final value, e.g., 1, 2.5, 300.\nQuestion: Find L.")
    vision_only = _doc("mvlm_mathverse", "sample_index", "3425")
    assert prompt_of("mvlm_mathverse", vision_only) == (
        "According to the question shown in the image, please directly answer the question and provide the "
        "final value, e.g., 1, 2.5, 300.")


def test_mathvision_prompt_is_the_official_template():
    kittens = _doc("mvlm_mathvision", "id", "6")
    assert prompt_of("mvlm_mathvision", kittens) == MATHV_INSTRUCTION + (
        "Misty the cat has five kittens: two of them are striped, one spotty, the rest of them are absolutely "
        "white. In which picture can we see the kittens of Misty, knowing that the ears of one of them are of "
        "different colour?\n<image1>\n(A) A\n(B) B\n(C) C\n(D) D\n(E) E\n")
    digits = _doc("mvlm_mathvision", "id", "4")
    assert prompt_of("mvlm_mathvision", digits) == MATHV_INSTRUCTION + (
        "How many different digits can you find in this picture?\n<image1>\n")
    bikes = _doc("mvlm_mathvision_test", "id", "2")
    assert prompt_of("mvlm_mathvision_test", bikes) == MATHV_INSTRUCTION + (
        "Which bike is most expensive?\n<image1>\n(A) A\n(B) B\n(C) C\n(D) D\n(E) E\n")


def test_dynamath_prompt_is_the_official_template():
    guide = (
        "\n## Answer Instruction Please provide an answer to the question outlined above. Your response should "
        "adhere \nto the following JSON format, which includes two keys: 'solution' and 'short answer'. The "
        "'solution' key can contain \ndetailed steps needed to solve the question, and the 'short answer' key "
        "should provide a concise response. If the problem is a multiple choice problem, just provide the "
        "corresponing choice option, \nsuch as 'A', 'B', 'C', or 'D'. If the answer is a numerical value, format "
        "it as a three-digit floating-point number.\n\nExample of expected JSON response format:\n\n"
        '{\n    "solution": "[Detailed step-by-step explanation]",\n    "short answer": "[Concise Answer]"\n}')
    choice = _doc("mvlm_dynamath", "id", "5")
    assert prompt_of("mvlm_dynamath", choice) == (
        "## Question\nIs Dark Magenta greater than Rosy Brown? Choices: (A) yes (B) no" + guide)
    period = _doc("mvlm_dynamath", "id", "1")
    assert prompt_of("mvlm_dynamath", period) == (
        "## Question\nWhat is the period of this function y = a*sin(b*x), where both a and b are integers? Answer "
        "the question with a floating-point number.Please answer in a floating-point number." + guide)


def test_ocrbench_prompt_is_the_bare_question():
    hme = _doc("mvlm_ocrbench", "dataset", "HME100k")
    assert prompt_of("mvlm_ocrbench", hme) == (
        "Please write out the expression of the formula in the image using LaTeX format.")
    receipt = _doc("mvlm_ocrbench", "dataset", "SROIE")
    assert prompt_of("mvlm_ocrbench", receipt) == (
        "what is the name of the company that issued this receipt? Answer this question using the text in the "
        "image directly.")


def test_mmstar_prompt_asks_for_the_letter_directly():
    suitcase = _doc("mvlm_mmstar_reasoning", "index", "4")
    assert prompt_of("mvlm_mmstar_reasoning", suitcase) == (
        "Which option describe the object relationship in the image correctly?\nOptions: A: The suitcase is on "
        "the book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase is "
        "beneath the book.\nAnswer with the option's letter from the given choices directly.")
