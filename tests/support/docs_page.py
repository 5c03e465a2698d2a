"""Drive a service's Swagger UI page (/docs) in headless chromium, as a person would.

``operations_listed`` reads the operations the page shows; ``try_with_token``
uses the "Authorize" button with a bearer token, then "Try it out" and
"Execute" on one operation, and returns the status the page shows.
"""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

# A bound on waiting for the page, not a timed assertion: a slow machine only waits longer.
PAGE_BOUND_SECONDS = 60
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def documented_operations(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in openapi["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def open_docs(driver: WebDriver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, PAGE_BOUND_SECONDS).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, ".opblock"))
    )


def operations_listed(driver: WebDriver) -> set[tuple[str, str]]:
    found = set()
    for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip()
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
            "data-path"
        )
        found.add((method.upper(), str(path)))
    return found


def authorize(driver: WebDriver, token: str) -> None:
    wait = WebDriverWait(driver, PAGE_BOUND_SECONDS)
    driver.find_element(By.CSS_SELECTOR, ".auth-wrapper button.authorize").click()
    field = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux input")))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper button.authorize").click()
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux button.btn-done")))
    driver.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()
    wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))


def try_it(driver: WebDriver, method: str, path: str) -> str:
    """Expand the operation, Try it out, Execute; the status code the page shows."""
    wait = WebDriverWait(driver, PAGE_BOUND_SECONDS)
    block = next(
        b
        for b in driver.find_elements(By.CSS_SELECTOR, ".opblock")
        if b.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip().upper() == method
        and b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path")
        == path
    )
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, "button.execute"))
    block.find_element(By.CSS_SELECTOR, "button.execute").click()
    cell = ".live-responses-table tr.response .response-col_status"
    wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, cell))
    return str(block.find_element(By.CSS_SELECTOR, cell).text).split()[0]
