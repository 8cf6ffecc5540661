from labelhub.roles import user_roles


def roles(request):
    """Expose ``roles`` (a set of annotator/lead/admin) to every template."""
    return {"roles": user_roles(request.user)}
