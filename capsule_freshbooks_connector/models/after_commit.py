"""The one way work leaves for FreshBooks: after the transaction that decided it has committed."""

from odoo import api


def after_commit(model, method, items):
    """Call `model.method(items)` once this transaction commits, in a cursor of its own, with
    every item added under the same model and method meanwhile (a contact saved twice is pushed
    once). Nothing is called when the transaction rolls back."""
    env = model.env
    data = env.cr.postcommit.data
    key = ("freshbooks.after_commit", model._name, method)
    if key not in data:
        data[key] = {}
        registry, uid, context = env.registry, env.uid, dict(env.context)

        @env.cr.postcommit.add
        def run():
            todo = list(data.pop(key, {}))
            with registry.cursor() as cr:
                # Held until the commit: the cursor flushes only environments still alive.
                new_env = api.Environment(cr, uid, context)
                getattr(new_env[model._name], method)(todo)
    data[key].update(dict.fromkeys(items))
