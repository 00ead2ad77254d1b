from lab_actions import open_notebook, run_all
def test_dbg(page, lab):
    open_notebook(page, lab, "00_quickstart.ipynb")
    run_all(page)
    page.wait_for_timeout(3000)
    print(page.evaluate("""() => ({
      imgs: document.querySelectorAll('.widget-image').length,
      jw: document.querySelectorAll('.jupyter-widgets').length,
      selects: [...document.querySelectorAll('select')].map(s => s.innerText.slice(0,80)),
      mimes: [...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.getAttribute('data-mime-type') + ':' + o.className).slice(0,40),
      cells: document.querySelectorAll('.jp-Cell').length,
    })"""))
