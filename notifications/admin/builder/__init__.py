"""The workflow builder: the workflow's admin page, where steps are added, ordered, duplicated
and removed with a form per step type, conditions are rows of path / operator / value, the
`data` schema is a list of fields, and the flow is drawn as a diagram.

`declarations` (what each step type's form shows and where each field goes in the JSON),
`convert` (form ↔ JSON), `schema` (data fields ↔ JSON Schema), `render` (the forms' HTML),
`diagram` (the flow), `views` (read, validate with the API's serializer, save with
`services.workflow_put`). The page's script is static/clarion/workflow-builder.js.
"""
