// Interactive docs for the read API: Swagger UI on the generated schema.
(function () {
  "use strict";
  const schema = document.currentScript.dataset.schema;
  window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({ url: schema, dom_id: "#swagger-ui", tryItOutEnabled: true });
  });
})();
